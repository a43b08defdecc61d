//! Secret-less senders (`generic-oidc`, `gcr`) prove themselves with an ID token that Envoy's JWT filter
//! verifies: an Envoy Gateway SecurityPolicy `jwt` provider on the route checks the signature against the
//! issuer's JWKS, the expiry, and the issuer and audience it is given, and hands the verified payload on as
//! dynamic metadata under the provider's name (`payload_in_metadata`). A client cannot write dynamic
//! metadata; it can write headers, so nothing here trusts a header on its own.
//!
//! The metadata reaches a Wasm filter without JSON types: Envoy serializes a map as proxy-wasm pairs
//! (strings raw, booleans one byte, numbers 8-byte doubles, maps and lists as pairs again; a null fails).
//! So the claims are read as JSON from the bearer token in the request, and taken only when they are
//! exactly what the metadata holds. The request must carry one token, in one `Authorization` header and
//! not also in an `access_token` query parameter (Envoy Gateway's default places): then the token the JWT
//! filter verified is that one, and the comparison with the metadata checks it again, except for the
//! types the serialization loses (a one-byte string against a boolean, an eight-byte string against a
//! number), which only the issuer could sign.
//! The receiver's rules ([`TokenRules`]) are checked on them again, so a SecurityPolicy written too
//! loosely cannot widen what a receiver accepts.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{Map, Value};

use crate::cel::ClaimValidations;
use crate::delivery::Headers;
use crate::outcome::Rejection;

/// The JWT filter's dynamic metadata namespace.
pub const JWT_AUTHN_METADATA: &str = "envoy.filters.http.jwt_authn";
/// A token larger than this is refused before decoding (Google's and GitHub's are about 1 KiB).
const MAX_TOKEN_LEN: usize = 16 * 1024;
/// Nesting deeper than this in the metadata is refused rather than followed.
const MAX_DEPTH: usize = 32;
/// Envoy's JWT filter allows this much clock skew; the expiry is checked again with the same allowance.
const CLOCK_SKEW_SECONDS: u64 = 60;

/// The property path of the claims the JWT filter verified for `jwt_provider`.
pub fn metadata_path(jwt_provider: &str) -> [&str; 4] {
    [
        "metadata",
        "filter_metadata",
        JWT_AUTHN_METADATA,
        jwt_provider,
    ]
}

/// What a receiver requires of a verified token's claims.
#[derive(Debug)]
pub struct TokenRules {
    /// The SecurityPolicy `jwt` provider whose metadata holds the verified claims.
    pub jwt_provider: String,
    /// `iss` must be one of these.
    pub issuers: Vec<String>,
    /// `aud` must be this, or a list holding it.
    pub audience: String,
    /// `email` must be this, when set.
    pub email: Option<String>,
    /// `email_verified` must be `true`.
    pub require_verified_email: bool,
    /// CEL over `claims`, each of which must be true (Flux's `generic-oidc` validations); an error is a
    /// refusal.
    pub validations: ClaimValidations,
}

impl TokenRules {
    /// The claims of the verified token in `headers`, if they satisfy these rules. `verified` is the JWT
    /// filter's metadata for [`TokenRules::jwt_provider`] (`None`: it verified no token on this route).
    pub fn verified_claims(
        &self,
        headers: &Headers,
        verified: Option<&[u8]>,
        now: u64,
    ) -> Result<Map<String, Value>, Rejection> {
        let verified = verified.ok_or(Rejection::TokenNotVerified)?;
        let claims = bearer_claims(headers)?;
        if !matches_metadata(&claims, verified, 0) {
            return Err(Rejection::TokenNotVerified);
        }
        let Value::Object(claims) = claims else {
            return Err(Rejection::TokenNotVerified);
        };
        self.check(&claims, now)?;
        Ok(claims)
    }

    fn check(&self, claims: &Map<String, Value>, now: u64) -> Result<(), Rejection> {
        let text = |name: &str| claims.get(name).and_then(Value::as_str);
        let issuer_ok = text("iss").is_some_and(|iss| self.issuers.iter().any(|i| i == iss));
        let audience_ok = match claims.get("aud") {
            Some(Value::String(aud)) => *aud == self.audience,
            Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(&self.audience)),
            _ => false,
        };
        // A token that never expires is not one a sender should hold.
        let unexpired = claims
            .get("exp")
            .and_then(Value::as_f64)
            .is_some_and(|exp| exp + CLOCK_SKEW_SECONDS as f64 >= now as f64);
        let email_ok = self
            .email
            .as_deref()
            .is_none_or(|e| text("email") == Some(e));
        let verified_ok = !self.require_verified_email
            || claims.get("email_verified") == Some(&Value::Bool(true));
        let validated = || match self.validations.accept(claims) {
            Ok(accepted) => accepted,
            Err(error) => {
                log::warn!("hookgate: an idToken validation could not decide: {error}");
                false
            }
        };
        if issuer_ok && audience_ok && unexpired && email_ok && verified_ok && validated() {
            Ok(())
        } else {
            Err(Rejection::ClaimsNotAccepted)
        }
    }
}

/// The JSON payload of the request's `Authorization: Bearer <JWT>`.
fn bearer_claims(headers: &Headers) -> Result<Value, Rejection> {
    let mut authorizations = headers
        .iter()
        .filter(|(name, _)| *name == "authorization")
        .map(|(_, value)| value);
    let authorization = authorizations.next().ok_or(Rejection::MissingToken)?;
    let query = headers.get(":path").and_then(|path| path.split_once('?'));
    let token_in_query =
        query.is_some_and(|(_, q)| q.split('&').any(|p| p.starts_with("access_token=")));
    if authorizations.next().is_some() || token_in_query {
        return Err(Rejection::TokenNotVerified);
    }
    let authorization =
        std::str::from_utf8(authorization).map_err(|_| Rejection::TokenNotVerified)?;
    let (scheme, token) = authorization
        .split_once(' ')
        .ok_or(Rejection::TokenNotVerified)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.len() > MAX_TOKEN_LEN {
        return Err(Rejection::TokenNotVerified);
    }
    let mut parts = token.trim().split('.');
    let (Some(_header), Some(payload), Some(_signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Rejection::TokenNotVerified);
    };
    let json = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| Rejection::TokenNotVerified)?;
    serde_json::from_slice(&json).map_err(|_| Rejection::TokenNotVerified)
}

/// Whether `value` is what Envoy serializes as `bytes`.
fn matches_metadata(value: &Value, bytes: &[u8], depth: usize) -> bool {
    if depth > MAX_DEPTH {
        return false;
    }
    match value {
        Value::String(text) => bytes == text.as_bytes(),
        Value::Bool(flag) => bytes == [u8::from(*flag)],
        Value::Number(number) => number
            .as_f64()
            .is_some_and(|n| bytes == n.to_le_bytes().as_slice()),
        // Envoy cannot serialize a null: a token with one never has metadata to match.
        Value::Null => false,
        // A list is pairs whose keys are the items and whose values are empty.
        Value::Array(items) => pairs(bytes).is_some_and(|entries| {
            entries.len() == items.len()
                && entries.iter().zip(items).all(|((item, empty), value)| {
                    empty.is_empty() && matches_metadata(value, item, depth + 1)
                })
        }),
        Value::Object(fields) => pairs(bytes).is_some_and(|mut entries| {
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            let unique = entries.windows(2).all(|w| w[0].0 != w[1].0);
            unique
                && entries.len() == fields.len()
                && fields.iter().all(|(name, value)| {
                    entries
                        .binary_search_by(|(key, _)| (*key).cmp(name.as_bytes()))
                        .is_ok_and(|i| matches_metadata(value, entries[i].1, depth + 1))
                })
        }),
    }
}

/// Envoy's proxy-wasm pairs: a little-endian u32 count, the (key size, value size) of each entry as two
/// u32s, then each key and each value followed by a NUL. `None` for anything else.
fn pairs(bytes: &[u8]) -> Option<Vec<(&[u8], &[u8])>> {
    let u32_at = |at: usize| -> Option<usize> {
        let word = bytes.get(at..at.checked_add(4)?)?;
        Some(u32::from_le_bytes(word.try_into().ok()?) as usize)
    };
    let count = u32_at(0)?;
    // The sizes alone take 8 bytes an entry: a count the input cannot hold is refused before allocating.
    let mut data = count.checked_mul(8)?.checked_add(4)?;
    if data > bytes.len() {
        return None;
    }
    let mut entries = Vec::with_capacity(count);
    let mut take = |size: usize| -> Option<&[u8]> {
        let field = bytes.get(data..data.checked_add(size)?)?;
        (*bytes.get(data + size)? == 0).then_some(())?;
        data += size + 1;
        Some(field)
    };
    for i in 0..count {
        let (key_size, value_size) = (u32_at(4 + 8 * i)?, u32_at(8 + 8 * i)?);
        let key = take(key_size)?;
        entries.push((key, take(value_size)?));
    }
    (data == bytes.len()).then_some(entries)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    pub const NOW: u64 = 1_800_000_000;

    type Expected = Result<(), Rejection>;

    /// Envoy's serialization of `value`, written from the format as observed on Envoy 1.40 (the byte
    /// strings in `envoy_serializations_observed_on_a_real_envoy` come from a real run).
    pub fn serialize(value: &Value) -> Vec<u8> {
        fn pairs(entries: Vec<(Vec<u8>, Vec<u8>)>) -> Vec<u8> {
            let mut out = (entries.len() as u32).to_le_bytes().to_vec();
            for (k, v) in &entries {
                out.extend((k.len() as u32).to_le_bytes());
                out.extend((v.len() as u32).to_le_bytes());
            }
            for (k, v) in entries {
                out.extend(k);
                out.push(0);
                out.extend(v);
                out.push(0);
            }
            out
        }
        match value {
            Value::String(s) => s.as_bytes().to_vec(),
            Value::Bool(b) => vec![u8::from(*b)],
            Value::Number(n) => n.as_f64().unwrap().to_le_bytes().to_vec(),
            Value::Array(items) => pairs(items.iter().map(|i| (serialize(i), vec![])).collect()),
            Value::Object(m) => pairs(
                m.iter()
                    .map(|(k, v)| (k.as_bytes().to_vec(), serialize(v)))
                    .collect(),
            ),
            Value::Null => panic!("Envoy cannot serialize a null"),
        }
    }

    /// A bearer token whose payload is `claims` (the signature is Envoy's business, not this module's).
    pub fn bearer(claims: &Value) -> Headers {
        let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
        Headers::new([(
            "authorization",
            format!("Bearer eyJhbGciOiJSUzI1NiJ9.{payload}.c2ln"),
        )])
    }

    fn rules() -> TokenRules {
        TokenRules {
            jwt_provider: "google".into(),
            issuers: vec!["https://accounts.google.com".into()],
            audience: "https://hooks.example.com/hook/x".into(),
            email: Some("pusher@project.iam.gserviceaccount.com".into()),
            require_verified_email: true,
            validations: ClaimValidations::compile(&["claims.sub.startsWith('12')".into()])
                .unwrap(),
        }
    }

    fn claims() -> Value {
        json!({"iss": "https://accounts.google.com", "aud": "https://hooks.example.com/hook/x",
               "email": "pusher@project.iam.gserviceaccount.com", "email_verified": true,
               "exp": NOW + 300, "iat": NOW, "sub": "1234"})
    }

    #[test]
    fn envoy_serializations_observed_on_a_real_envoy() {
        // From Envoy 1.40 with jwt_authn's payload_in_metadata, read by a probe module with get_property.
        let observed: &[(Value, &str)] = &[
            (json!(["notification-controller", "x"]),
             "02000000170000000000000001000000000000006e6f74696669636174696f6e2d636f6e74726f6c6c65720000780000"),
            (json!(true), "01"),
            (json!(false), "00"),
            (json!(42), "0000000000004540"),
            (json!(1.5), "000000000000f83f"),
            (json!({"a": "b"}), "01000000010000000100000061006200"),
            (json!([]), "00000000"),
            (json!({}), "00000000"),
            (json!([{"a": 1}, "s"]),
             "02000000170000000000000001000000000000000100000001000000080000006100000000000000f03f000000730000"),
        ];
        for (value, hex_bytes) in observed {
            let bytes = hex::decode(hex_bytes).unwrap();
            assert_eq!(serialize(value), bytes, "{value}");
            assert!(matches_metadata(value, &bytes, 0), "{value}");
        }
    }

    #[test]
    fn claims_are_taken_only_when_they_are_what_the_jwt_filter_verified() {
        let verified = serialize(&claims());
        let mut other_email = claims();
        other_email["email"] = json!("attacker@example.com");
        let mut extra = claims();
        extra["admin"] = json!(true);
        let twice = Headers::new(bearer(&claims()).iter().chain(bearer(&other_email).iter()));
        let in_query = Headers::new(
            bearer(&claims())
                .iter()
                .chain([(":path", &b"/hook/x?access_token=a.b.c"[..])]),
        );
        #[rustfmt::skip]
        let cases: &[(&str, Headers, Option<&[u8]>, Expected)] = &[
            ("the verified token",                      bearer(&claims()),      Some(&verified), Ok(())),
            ("no metadata: no verified token",          bearer(&claims()),      None,            Err(Rejection::TokenNotVerified)),
            ("another token than the verified one",     bearer(&other_email),   Some(&verified), Err(Rejection::TokenNotVerified)),
            ("a claim added",                           bearer(&extra),         Some(&verified), Err(Rejection::TokenNotVerified)),
            ("a second authorization header",           twice,                  Some(&verified), Err(Rejection::TokenNotVerified)),
            ("a token in the access_token query too",   in_query,               Some(&verified), Err(Rejection::TokenNotVerified)),
            ("no authorization header",                 Headers::default(),     Some(&verified), Err(Rejection::MissingToken)),
            ("basic, not bearer",                       Headers::new([("authorization", "Basic eDp5")]), Some(&verified), Err(Rejection::TokenNotVerified)),
            ("two segments",                            Headers::new([("authorization", "Bearer a.b")]), Some(&verified), Err(Rejection::TokenNotVerified)),
            ("payload not base64url",                   Headers::new([("authorization", "Bearer a.%%%.c")]), Some(&verified), Err(Rejection::TokenNotVerified)),
            ("metadata truncated",                      bearer(&claims()),      Some(&verified[..verified.len() - 1]), Err(Rejection::TokenNotVerified)),
            ("metadata with a huge count",              bearer(&claims()),      Some(&[0xff, 0xff, 0xff, 0xff][..]), Err(Rejection::TokenNotVerified)),
        ];
        for (name, headers, metadata, expected) in cases {
            let result = rules().verified_claims(headers, *metadata, NOW).map(|_| ());
            assert_eq!(&result, expected, "{name}");
        }
    }

    #[test]
    fn the_receivers_rules_are_checked_on_verified_claims() {
        let with = |edit: &dyn Fn(&mut Value)| {
            let mut c = claims();
            edit(&mut c);
            c
        };
        #[rustfmt::skip]
        let cases: &[(&str, Value, Expected)] = &[
            ("all rules met",              claims(),                                                   Ok(())),
            ("audience in a list",         with(&|c| c["aud"] = json!(["other", "https://hooks.example.com/hook/x"])), Ok(())),
            ("expired within the skew",    with(&|c| c["exp"] = json!(NOW - 30)),                      Ok(())),
            ("wrong issuer",               with(&|c| c["iss"] = json!("https://evil.example.com")),    Err(Rejection::ClaimsNotAccepted)),
            ("wrong audience",             with(&|c| c["aud"] = json!("notification-controller")),     Err(Rejection::ClaimsNotAccepted)),
            ("wrong email",                with(&|c| c["email"] = json!("other@project.iam.gserviceaccount.com")), Err(Rejection::ClaimsNotAccepted)),
            ("email not verified",         with(&|c| c["email_verified"] = json!(false)),              Err(Rejection::ClaimsNotAccepted)),
            ("email_verified as a string", with(&|c| c["email_verified"] = json!("true")),             Err(Rejection::ClaimsNotAccepted)),
            ("no email_verified",          with(&|c| { c.as_object_mut().unwrap().remove("email_verified"); }), Err(Rejection::ClaimsNotAccepted)),
            ("expired",                    with(&|c| c["exp"] = json!(NOW - 3600)),                    Err(Rejection::ClaimsNotAccepted)),
            ("no expiry",                  with(&|c| { c.as_object_mut().unwrap().remove("exp"); }),   Err(Rejection::ClaimsNotAccepted)),
            ("a validation false",         with(&|c| c["sub"] = json!("99")),                          Err(Rejection::ClaimsNotAccepted)),
            ("a validation in error",      with(&|c| { c.as_object_mut().unwrap().remove("sub"); }),   Err(Rejection::ClaimsNotAccepted)),
        ];
        for (name, claims, expected) in cases {
            let result = rules()
                .verified_claims(&bearer(claims), Some(&serialize(claims)), NOW)
                .map(|_| ());
            assert_eq!(&result, expected, "{name}");
        }
    }
}
