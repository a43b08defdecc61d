//! Flux's `generic`: no proof in the request, the secret URL path is the proof.

use super::{Credential, Provider, Sender, ANY_JSON_SAMPLE};
use crate::delivery::Headers;

#[derive(Debug)]
pub struct Generic;

impl Provider for Generic {
    fn sender(&self) -> Sender {
        Sender::new(Credential::SecretPath, ANY_JSON_SAMPLE)
    }
    /// Flux reads nothing of a `generic` delivery's body.
    fn takes_empty_body(&self, _: &Headers) -> bool {
        true
    }
}
