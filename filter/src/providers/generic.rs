//! Flux's `generic`: no proof in the request, the secret URL path is the proof.

use super::{Proof, Provider};

#[derive(Debug)]
pub struct Generic;

impl Provider for Generic {
    fn proof(&self) -> Proof {
        Proof::SecretPath
    }
}
