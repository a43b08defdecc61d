//! Secret material (provider secrets, the attestation key) as a type that cannot be printed: `Debug` and
//! `Display` show only that a secret is there, so a `{:?}` of a configuration or an error never leaks one.

use std::fmt;

/// Key bytes whose formatting is redacted. Read them with [`Secret::expose`], which names every place that
/// touches the material.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Self(bytes.into())
    }

    /// The key bytes, for computing or comparing a MAC.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(text: String) -> Self {
        Self(text.into_bytes())
    }
}

impl From<&str> for Secret {
    fn from(text: &str) -> Self {
        Self(text.as_bytes().to_vec())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(redacted)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(redacted)")
    }
}

#[cfg(test)]
mod tests {
    use super::Secret;

    #[test]
    fn formatting_never_shows_the_material() {
        let secret = Secret::from("hunter2-very-secret");
        for text in [
            format!("{secret:?}"),
            format!("{secret}"),
            format!("{:?}", vec![secret.clone()]),
            format!("{:#?}", Some(&secret)),
        ] {
            assert!(!text.contains("hunter2"), "{text}");
            assert!(text.contains("redacted"), "{text}");
        }
        assert_eq!(secret.expose(), b"hunter2-very-secret");
    }
}
