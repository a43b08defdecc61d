//! Flux's `generic`: no proof in the request, the secret URL path is the proof.

use super::{Credential, Provider, Sender, ANY_JSON_SAMPLE};

#[derive(Debug)]
pub struct Generic;

impl Provider for Generic {
    fn sender(&self) -> Sender {
        Sender::new(Credential::SecretPath, ANY_JSON_SAMPLE)
    }
}
