//! A static `Authorization: Bearer <token>`, for Argo CD notifications and any tool that can only send a
//! header. Argo CD's webhook service defaults to GET, so GET and PUT are accepted besides POST.

use super::{verify_token, Provider, VerifyOptions};
use crate::delivery::Delivery;
use crate::outcome::Rejection;

pub struct Bearer;

impl Provider for Bearer {
    fn verify(&self, d: &Delivery, secrets: &[Vec<u8>], _: VerifyOptions) -> Result<(), Rejection> {
        let header = d
            .headers
            .get("authorization")
            .ok_or(Rejection::MissingToken)?;
        let token = bearer_token(header).ok_or(Rejection::MalformedSignature)?;
        verify_token(Some(token), secrets)
    }
    fn methods(&self) -> &'static [&'static str] {
        &["POST", "PUT", "GET"]
    }
}

/// The token of `Bearer <token>`, scheme case-insensitive (RFC 9110 §11.1).
fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::Headers;
    use crate::providers::test_support::*;

    fn check(auth: Option<&str>) -> Result<(), Rejection> {
        let h = Headers::new(auth.map(|a| ("authorization", a)));
        Bearer.verify(
            &delivery(&h, b""),
            &secrets(&["argo-token"]),
            VerifyOptions::default(),
        )
    }

    #[test]
    fn bearer_tokens() {
        assert_eq!(check(Some("Bearer argo-token")), Ok(()));
        assert_eq!(check(Some("bearer argo-token")), Ok(()));
        assert_eq!(
            check(Some("Bearer argo-tokens")),
            Err(Rejection::TokenMismatch)
        );
        assert_eq!(
            check(Some("Basic argo-token")),
            Err(Rejection::MalformedSignature)
        );
        assert_eq!(
            check(Some("argo-token")),
            Err(Rejection::MalformedSignature)
        );
        assert_eq!(check(Some("Bearer ")), Err(Rejection::MalformedSignature));
        assert_eq!(check(None), Err(Rejection::MissingToken));
    }
}
