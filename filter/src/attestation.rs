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

/// The value of [`SIGNATURE_HEADER`] for `body` signed at `timestamp`.
pub fn sign(key: &[u8], timestamp: u64, body: &[u8]) -> String {
    let ts = timestamp.to_string();
    let mac = hmac(Algorithm::Sha256, key, &[ts.as_bytes(), b".", body]);
    format!("{SCHEME}{}", hex::encode(mac))
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
) -> Result<(), AttestationError> {
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
    // Sign over the timestamp text exactly as received, so no re-formatting can change what is covered.
    if hmac_matches(
        Algorithm::Sha256,
        key,
        &[ts_text.as_bytes(), b".", body],
        &mac,
    ) {
        Ok(())
    } else {
        Err(AttestationError::SignatureMismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

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
            ),
            Ok(())
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
}
