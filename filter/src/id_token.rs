//! Secret-less senders (`generic-oidc`, `gcr`) prove themselves with an ID token that Envoy's JWT filter
//! verifies: an Envoy Gateway SecurityPolicy `jwt` provider on the route checks the signature against the
//! issuer's JWKS, the expiry, and the issuer and audience it is given, and hands the verified payload on as
//! dynamic metadata under the provider's name (`payload_in_metadata`). A client cannot write dynamic
//! metadata; it can write headers, so nothing here trusts a header on its own.
//!
//! The filter reads the request's dynamic metadata whole, as the serialized protobuf Envoy gives for it
//! ([`metadata`]), where each claim keeps its JSON kind (a list is not an object, a boolean not a
//! one-byte string). The claims are read as JSON from the bearer token in the request too, and taken only
//! when they are exactly the verified ones (numbers compared as the doubles the metadata holds). The
//! request must carry one token, in one `Authorization` header and not also in an `access_token` query
//! parameter (Envoy Gateway's default places): then the token the JWT filter verified is that one, and the
//! comparison with the metadata checks it again, whatever other place a SecurityPolicy reads tokens from.
//! The receiver's rules ([`TokenRules`]) are checked on them again, so a SecurityPolicy written too
//! loosely cannot widen what a receiver accepts.

pub mod metadata;

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
/// Envoy's JWT filter allows this much clock skew; the expiry is checked again with the same allowance.
const CLOCK_SKEW_SECONDS: u64 = 60;

/// The property the filter reads for the verified claims: the request's dynamic metadata, whole (read
/// under a longer path, Envoy would give its claims without their JSON kinds).
pub const METADATA_PROPERTY: [&str; 1] = ["metadata"];

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
    /// The claims of the verified token in `headers`, if they satisfy these rules. `metadata` is the
    /// request's dynamic metadata ([`METADATA_PROPERTY`]), where the JWT filter put what it verified for
    /// [`TokenRules::jwt_provider`] (`None`, or nothing there: it verified no token on this route).
    pub fn verified_claims(
        &self,
        headers: &Headers,
        metadata: Option<&[u8]>,
        now: u64,
    ) -> Result<Map<String, Value>, Rejection> {
        let verified = metadata
            .and_then(|m| metadata::verified_claims(m, JWT_AUTHN_METADATA, &self.jwt_provider))
            .ok_or(Rejection::TokenNotVerified)?;
        let claims = bearer_claims(headers)?;
        let Value::Object(claims) = claims else {
            return Err(Rejection::TokenNotVerified);
        };
        if !same_claims(&claims, &verified) {
            return Err(Rejection::TokenNotVerified);
        }
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

/// Whether the bearer token's `claims` are the `verified` ones, kind for kind: numbers as the doubles the
/// JWT filter holds.
fn same_claims(claims: &Map<String, Value>, verified: &Map<String, Value>) -> bool {
    claims.len() == verified.len()
        && claims
            .iter()
            .all(|(name, value)| verified.get(name).is_some_and(|v| same_value(value, v)))
}

fn same_value(claim: &Value, verified: &Value) -> bool {
    match (claim, verified) {
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(a, b)| same_value(a, b))
        }
        (Value::Object(a), Value::Object(b)) => same_claims(a, b),
        // The metadata's nesting is bounded (`metadata`): so is this recursion.
        (a, b) => a == b,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    pub const NOW: u64 = 1_800_000_000;

    type Expected = Result<(), Rejection>;

    /// The request's dynamic metadata, serialized as Envoy gives it, when the JWT filter verified
    /// `claims` for the provider `google` (the one [`rules`] names).
    pub fn verified(claims: &Value) -> Vec<u8> {
        metadata::tests::encode_metadata(JWT_AUTHN_METADATA, &[("google", claims)])
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
    fn claims_are_taken_only_when_they_are_what_the_jwt_filter_verified() {
        let genuine = verified(&claims());
        let mut other_email = claims();
        other_email["email"] = json!("attacker@example.com");
        let mut extra = claims();
        extra["admin"] = json!(true);
        let twice = Headers::new(bearer(&claims()).iter().chain(bearer(&other_email).iter()));
        let mut as_list = claims();
        as_list["groups"] = json!(["staff"]);
        let mut as_object = claims();
        as_object["groups"] = json!({"staff": ""});
        let (verified_list, verified_object) = (verified(&as_list), verified(&as_object));
        let mut flag = claims();
        flag["groups"] = json!(true);
        let mut one_byte = claims();
        one_byte["groups"] = json!("\u{1}");
        let verified_one_byte = verified(&one_byte);
        let other_provider =
            metadata::tests::encode_metadata(JWT_AUTHN_METADATA, &[("github", &claims())]);
        let mut with_null = claims();
        with_null["groups"] = Value::Null;
        let in_query = Headers::new(
            bearer(&claims())
                .iter()
                .chain([(":path", &b"/hook/x?access_token=a.b.c"[..])]),
        );
        #[rustfmt::skip]
        let cases: &[(&str, Headers, Option<&[u8]>, Expected)] = &[
            ("the verified token",                      bearer(&claims()),      Some(&genuine), Ok(())),
            ("no metadata: no verified token",          bearer(&claims()),      None,            Err(Rejection::TokenNotVerified)),
            ("another token than the verified one",     bearer(&other_email),   Some(&genuine), Err(Rejection::TokenNotVerified)),
            ("a claim added",                           bearer(&extra),         Some(&genuine), Err(Rejection::TokenNotVerified)),
            ("a second authorization header",           twice,                  Some(&genuine), Err(Rejection::TokenNotVerified)),
            ("a token in the access_token query too",   in_query,               Some(&genuine), Err(Rejection::TokenNotVerified)),
            ("no authorization header",                 Headers::default(),     Some(&genuine), Err(Rejection::MissingToken)),
            ("basic, not bearer",                       Headers::new([("authorization", "Basic eDp5")]), Some(&genuine), Err(Rejection::TokenNotVerified)),
            ("two segments",                            Headers::new([("authorization", "Bearer a.b")]), Some(&genuine), Err(Rejection::TokenNotVerified)),
            ("payload not base64url",                   Headers::new([("authorization", "Bearer a.%%%.c")]), Some(&genuine), Err(Rejection::TokenNotVerified)),
            ("a list claim where the verified one is an object", bearer(&as_list), Some(&verified_object), Err(Rejection::TokenNotVerified)),
            ("an object claim where the verified one is a list", bearer(&as_object), Some(&verified_list), Err(Rejection::TokenNotVerified)),
            ("metadata truncated",                      bearer(&claims()),      Some(&genuine[..genuine.len() - 1]), Err(Rejection::TokenNotVerified)),
            ("metadata with a length past its end",     bearer(&claims()),      Some(&[0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f][..]), Err(Rejection::TokenNotVerified)),
            ("a boolean where the verified claim is a one-byte string", bearer(&flag), Some(&verified_one_byte), Err(Rejection::TokenNotVerified)),
            ("claims another provider verified",        bearer(&claims()),      Some(&other_provider), Err(Rejection::TokenNotVerified)),
            ("a null claim, verified",                  bearer(&with_null),     Some(&verified(&with_null)), Ok(())),
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
                .verified_claims(&bearer(claims), Some(&verified(claims)), NOW)
                .map(|_| ());
            assert_eq!(&result, expected, "{name}");
        }
    }
}
