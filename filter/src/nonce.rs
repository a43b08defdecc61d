//! A random value per forwarded request. The controller refuses an attestation it has already accepted
//! (replay), so two identical deliveries in the same second (a token-only sender has no delivery id, and
//! the attestation's timestamp has whole seconds) must still be two different attestations.

/// 16 random bytes as hex, from the host's random source (WASI `random_get` inside Envoy). `None` if the
/// host gives none: the request is still forwarded, as an attestation without a nonce.
pub fn fresh() -> Option<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).ok()?;
    Some(hex::encode(bytes))
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_nonce_is_new() {
        let nonces: std::collections::HashSet<String> =
            (0..1000).map(|_| super::fresh().unwrap()).collect();
        assert_eq!(nonces.len(), 1000);
        assert!(nonces.iter().all(|n| n.len() == 32));
    }
}
