//! Flux's `generic`: no proof in the request, the secret URL path is the proof.

use super::{Proof, Provider, VerifyOptions};
use crate::delivery::Delivery;
use crate::outcome::Rejection;

pub struct Generic;

impl Provider for Generic {
    fn proof(&self) -> Proof {
        Proof::SecretPath
    }
    fn verify(&self, _: &Delivery, _: &[Vec<u8>], _: VerifyOptions) -> Result<(), Rejection> {
        // Reaching here means the request's path was derived from one of the receiver's secrets.
        Ok(())
    }
}
