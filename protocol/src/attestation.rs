//! Attestation of forwarded requests: HMAC-SHA256 under a key shared by the Envoy pods and the controller,
//! over the timestamp and the exact body bytes. One implementation, used by the filter to sign and by the
//! controller to verify.

use std::fmt;

use crate::crypto::{hmac, hmac_matches, Algorithm};

/// Header carrying the unix time (seconds) at which the filter signed the request.
pub const TIMESTAMP_HEADER: &str = "x-hookgate-timestamp";
/// Header carrying `v1=<hex HMAC-SHA256(key, timestamp + "." + body)>`.
pub const SIGNATURE_HEADER: &str = "x-hookgate-signature";
/// Signature scheme prefix, so the format can change without ambiguity.
const SCHEME: &str = "v1=";
/// Shortest attestation key accepted, in bytes.
pub const MIN_KEY_LEN: usize = 16;
/// Default freshness window the controller allows around its own clock.
pub const DEFAULT_TOLERANCE_SECS: u64 = 60;

/// Why an attestation was refused. The messages are safe to return to a caller: no key material.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttestationError {
    MissingTimestamp,
    MalformedTimestamp,
    StaleTimestamp,
    MissingSignature,
    MalformedSignature,
    SignatureMismatch,
}

impl fmt::Display for AttestationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::MissingTimestamp => "missing attestation timestamp",
            Self::MalformedTimestamp => "malformed attestation timestamp",
            Self::StaleTimestamp => "attestation timestamp outside the allowed window",
            Self::MissingSignature => "missing attestation signature",
            Self::MalformedSignature => "malformed attestation signature",
            Self::SignatureMismatch => "attestation signature mismatch",
        })
    }
}

impl std::error::Error for AttestationError {}

/// Why an attestation key is refused at start-up. The messages say how to fix it and never show the key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyError {
    TooShort,
    SurroundingWhitespace,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooShort => write!(
                f,
                "the attestation key is shorter than {MIN_KEY_LEN} bytes: generate one with `openssl rand -hex 32` (or `hookgate token`)"
            ),
            Self::SurroundingWhitespace => f.write_str(
                "the attestation key begins or ends with whitespace (often a newline written by `echo`, an editor or \
                 `--from-file`); Envoy and the controller read it byte for byte and must agree, so it is refused. \
                 Recreate the Secret without it: `kubectl create secret generic hookgate-attestation \
                 --from-literal=key=\"$(openssl rand -hex 32)\"`, or write the file with `printf %s \"$key\"`",
            ),
        }
    }
}

impl std::error::Error for KeyError {}

/// The one rule for an attestation key, applied by the filter to its configuration and by the controller
/// to its key file or variable, so that both read the same bytes: at least [`MIN_KEY_LEN`] bytes and no
/// whitespace at either end (Envoy takes a Secret byte for byte, so a trailing newline would otherwise
/// make every forwarded request fail its attestation).
pub fn check_key(key: &[u8]) -> Result<(), KeyError> {
    // `is_ascii_whitespace` leaves out the vertical tab, which `str::trim` removes.
    let space = |b: &u8| b.is_ascii_whitespace() || *b == 0x0b;
    if key.first().is_some_and(space) || key.last().is_some_and(space) {
        return Err(KeyError::SurroundingWhitespace);
    }
    if key.len() < MIN_KEY_LEN {
        return Err(KeyError::TooShort);
    }
    Ok(())
}

/// The value of [`SIGNATURE_HEADER`] for `body` signed at `timestamp`.
pub fn sign(key: &[u8], timestamp: u64, body: &[u8]) -> String {
    let ts = timestamp.to_string();
    let mac = hmac(Algorithm::Sha256, key, &[ts.as_bytes(), b".", body]);
    format!("{SCHEME}{}", hex::encode(mac))
}

/// What a verified attestation proved: its timestamp and its MAC (which the controller remembers to refuse
/// a replay).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verified {
    pub timestamp: u64,
    pub mac: [u8; 32],
}

/// Checks the two attestation headers of a request against `body`, with `now` and `tolerance_secs` in unix
/// seconds. The timestamp is checked first so a stale request costs no MAC computation.
pub fn verify(
    key: &[u8],
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now: u64,
    tolerance_secs: u64,
) -> Result<Verified, AttestationError> {
    verify_any(&[key], timestamp, signature, body, now, tolerance_secs)
}

/// Checks as [`verify`] does, accepting a signature under any of `keys` (the current key and, while the key
/// changes, the previous one). Every key is tried, whichever matches, so the time taken does not tell
/// which key signed.
pub fn verify_any<K: AsRef<[u8]>>(
    keys: &[K],
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now: u64,
    tolerance_secs: u64,
) -> Result<Verified, AttestationError> {
    let ts_text = timestamp.ok_or(AttestationError::MissingTimestamp)?.trim();
    let ts: u64 = ts_text
        .parse()
        .map_err(|_| AttestationError::MalformedTimestamp)?;
    if ts.abs_diff(now) > tolerance_secs {
        return Err(AttestationError::StaleTimestamp);
    }
    let signature = signature.ok_or(AttestationError::MissingSignature)?.trim();
    let hex_mac = signature
        .strip_prefix(SCHEME)
        .ok_or(AttestationError::MalformedSignature)?;
    let mac = hex::decode(hex_mac).map_err(|_| AttestationError::MalformedSignature)?;
    // An HMAC-SHA256 of another length can never match: the same answer as any other mismatch.
    let mac: [u8; 32] = mac
        .try_into()
        .map_err(|_| AttestationError::SignatureMismatch)?;
    // Sign over the timestamp text exactly as received, so no re-formatting can change what is covered.
    let signed = [ts_text.as_bytes(), b".", body];
    let matched = keys.iter().fold(false, |matched, key| {
        hmac_matches(Algorithm::Sha256, key.as_ref(), &signed, &mac) | matched
    });
    if matched {
        Ok(Verified { timestamp: ts, mac })
    } else {
        Err(AttestationError::SignatureMismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn key_rule() {
        let cases: &[(&str, &[u8], Result<(), KeyError>)] = &[
            ("hex key", b"0123456789abcdef0123456789abcdef", Ok(())),
            (
                "inner space is part of the key",
                b"0123456789 abcdef",
                Ok(()),
            ),
            ("exactly the minimum", b"0123456789abcdef", Ok(())),
            (
                "trailing newline",
                b"0123456789abcdef0123\n",
                Err(KeyError::SurroundingWhitespace),
            ),
            (
                "trailing CRLF",
                b"0123456789abcdef0123\r\n",
                Err(KeyError::SurroundingWhitespace),
            ),
            (
                "leading space",
                b" 0123456789abcdef0123",
                Err(KeyError::SurroundingWhitespace),
            ),
            (
                "trailing tab",
                b"0123456789abcdef0123\t",
                Err(KeyError::SurroundingWhitespace),
            ),
            (
                "vertical tab",
                b"\x0b0123456789abcdef0123",
                Err(KeyError::SurroundingWhitespace),
            ),
            (
                "only whitespace",
                b"\n",
                Err(KeyError::SurroundingWhitespace),
            ),
            ("one short", b"0123456789abcde", Err(KeyError::TooShort)),
            ("empty", b"", Err(KeyError::TooShort)),
        ];
        for (name, key, expected) in cases {
            assert_eq!(check_key(key), *expected, "{name}");
        }
        for error in [KeyError::TooShort, KeyError::SurroundingWhitespace] {
            assert!(
                error.to_string().contains("openssl rand -hex 32"),
                "{error}"
            );
        }
    }

    #[test]
    fn signed_request_verifies() {
        let sig = sign(KEY, 1_700_000_000, b"{}");
        assert_eq!(
            verify(
                KEY,
                Some("1700000000"),
                Some(&sig),
                b"{}",
                1_700_000_030,
                60
            )
            .map(|v| v.timestamp),
            Ok(1_700_000_000)
        );
    }

    #[test]
    fn tampering_and_staleness_are_refused() {
        let sig = sign(KEY, 1_700_000_000, b"{}");
        let v = |ts: Option<&str>, sig: Option<&str>, body: &[u8], now| {
            verify(KEY, ts, sig, body, now, 60)
        };
        assert_eq!(
            v(Some("1700000000"), Some(&sig), b"{ }", 1_700_000_000),
            Err(AttestationError::SignatureMismatch)
        );
        assert_eq!(
            v(Some("1700000001"), Some(&sig), b"{}", 1_700_000_000),
            Err(AttestationError::SignatureMismatch)
        );
        assert_eq!(
            v(Some("1700000000"), Some(&sig), b"{}", 1_700_000_061),
            Err(AttestationError::StaleTimestamp)
        );
        assert_eq!(
            v(Some("1700000000"), Some(&sig), b"{}", 1_699_999_939),
            Err(AttestationError::StaleTimestamp)
        );
        assert_eq!(
            v(None, Some(&sig), b"{}", 1_700_000_000),
            Err(AttestationError::MissingTimestamp)
        );
        assert_eq!(
            v(Some("x"), Some(&sig), b"{}", 1_700_000_000),
            Err(AttestationError::MalformedTimestamp)
        );
        assert_eq!(
            v(Some("1700000000"), None, b"{}", 1_700_000_000),
            Err(AttestationError::MissingSignature)
        );
        assert_eq!(
            v(Some("1700000000"), Some(&sig[3..]), b"{}", 1_700_000_000),
            Err(AttestationError::MalformedSignature)
        );
        assert_eq!(
            v(Some("1700000000"), Some("v1=zz"), b"{}", 1_700_000_000),
            Err(AttestationError::MalformedSignature)
        );
        let other = sign(b"another key of sufficient length", 1_700_000_000, b"{}");
        assert_eq!(
            v(Some("1700000000"), Some(&other), b"{}", 1_700_000_000),
            Err(AttestationError::SignatureMismatch)
        );
    }

    /// During a change of key both keys are accepted, and nothing else.
    #[test]
    fn any_of_several_keys_verifies() {
        const PREVIOUS: &[u8] = b"the previous attestation key, still valid";
        let keys = [KEY, PREVIOUS];
        for (name, key, expected) in [
            ("current", KEY, Ok(1_700_000_000)),
            ("previous", PREVIOUS, Ok(1_700_000_000)),
            (
                "another",
                b"another key of sufficient length".as_slice(),
                Err(AttestationError::SignatureMismatch),
            ),
        ] {
            let sig = sign(key, 1_700_000_000, b"{}");
            let verified = verify_any(
                &keys,
                Some("1700000000"),
                Some(&sig),
                b"{}",
                1_700_000_000,
                60,
            );
            assert_eq!(verified.map(|v| v.timestamp), expected, "{name}");
        }
        let no_keys: [&[u8]; 0] = [];
        let sig = sign(KEY, 1_700_000_000, b"{}");
        assert_eq!(
            verify_any(
                &no_keys,
                Some("1700000000"),
                Some(&sig),
                b"{}",
                1_700_000_000,
                60
            ),
            Err(AttestationError::SignatureMismatch)
        );
    }
}
