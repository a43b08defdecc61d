//! The configuration channel between the controller and the filter (docs/live-configuration.md): the
//! filter's signed request for its configuration, and the controller's sealed answer. One implementation,
//! used by the filter to ask and open and by the controller to check and seal.
//!
//! The channel's key is a session agreed per proxy VM (`enrollment`), never used directly: HKDF derives a
//! request key (HMAC of the request) and a seal key (XChaCha20-Poly1305 of the answer) from it. An answer is sealed for one request: its associated data
//! holds that request's nonce, so an answer captured once opens for no other request.

use std::fmt;

use crate::crypto::{self, hmac, hmac_matches, sha256_hex, Algorithm};
use crate::secret::Secret;

/// Where the controller serves the configuration.
pub const CONFIGURATION_PATH: &str = "/hookgate/v1/configuration";
/// The id of the channel key the request is signed with (and the answer is to be sealed under).
pub const KEY_ID_HEADER: &str = "x-hookgate-channel-key";
/// Unix seconds at which the request was signed.
pub const TIMESTAMP_HEADER: &str = "x-hookgate-timestamp";
/// A new random value per request; the answer is sealed for it.
pub const NONCE_HEADER: &str = "x-hookgate-nonce";
/// `<generation>.<digest>` of the configuration the caller serves.
pub const KNOWN_HEADER: &str = "x-hookgate-known";
/// The proxy asking (Envoy's node id): what the receivers' status counts.
pub const PROXY_HEADER: &str = "x-hookgate-proxy";
/// `v1=<hex HMAC-SHA256>` over the headers above.
pub const SIGNATURE_HEADER: &str = "x-hookgate-signature";
/// How far a request's timestamp may be from the controller's clock.
pub const TOLERANCE_SECS: u64 = 60;
/// How long the controller holds a request whose caller is up to date before answering 304.
pub const LONG_POLL_SECS: u64 = 20;
/// The longest proxy name accepted.
pub const MAX_PROXY_LEN: usize = 253;

const SCHEME: &str = "v1=";
const MAGIC: &[u8; 4] = b"HGC1";
const SALT: &[u8] = b"hookgate channel v1";
pub(crate) const KEY_ID_LEN: usize = 8;
const NONCE_LEN: usize = 24;
/// Magic, key id, generation, AEAD nonce.
const ENVELOPE_HEADER_LEN: usize = MAGIC.len() + KEY_ID_LEN + 8 + NONCE_LEN;
/// A request nonce: 16 bytes as 32 hex characters.
const REQUEST_NONCE_LEN: usize = 32;

/// Why a request or an answer on the channel was refused. The messages name what failed, never a key or
/// any part of the configuration: safe to log and to answer with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelError {
    MissingHeader(&'static str),
    MalformedHeader(&'static str),
    UnknownKey,
    StaleTimestamp,
    SignatureMismatch,
    MalformedEnvelope,
    /// The answer does not open under the key it names for the request it answers: altered, sealed for
    /// another request (a replay), or under another key.
    EnvelopeNotAuthentic,
}

impl fmt::Display for ChannelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingHeader(name) => write!(f, "missing header {name}"),
            Self::MalformedHeader(name) => write!(f, "malformed header {name}"),
            Self::UnknownKey => f.write_str("unknown channel key"),
            Self::StaleTimestamp => f.write_str("timestamp outside the allowed window"),
            Self::SignatureMismatch => f.write_str("signature mismatch"),
            Self::MalformedEnvelope => f.write_str("malformed configuration envelope"),
            Self::EnvelopeNotAuthentic => f.write_str(
                "configuration envelope not authentic (altered, replayed, or under another key)",
            ),
        }
    }
}

impl std::error::Error for ChannelError {}

/// A channel key, ready for use: its id and the two keys derived from it. `Debug` shows the id only.
#[derive(Clone)]
pub struct ChannelKey {
    id: [u8; KEY_ID_LEN],
    request_key: Secret,
    seal_key: [u8; 32],
}

impl fmt::Debug for ChannelKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChannelKey({})", self.id_hex())
    }
}

impl ChannelKey {
    /// A session key agreed between a proxy VM and the controller (`enrollment`): `id` names the
    /// controller's key, `master` is what the agreement derived.
    pub(crate) fn agreed(id: [u8; KEY_ID_LEN], master: &[u8; 32]) -> Self {
        Self {
            id,
            request_key: Secret::new(crypto::derive_key(master, SALT, b"request").to_vec()),
            seal_key: crypto::derive_key(master, SALT, b"seal"),
        }
    }

    /// The id requests and envelopes name this key by: 16 hex characters, the id of the controller key
    /// the session was agreed with (`enrollment::Public::id`).
    pub fn id_hex(&self) -> String {
        hex::encode(self.id)
    }
}

/// Which configuration a caller serves: its generation and a digest of its content.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Known {
    pub generation: u64,
    /// `None` before the caller's first configuration.
    pub digest: Option<String>,
}

impl Known {
    /// The header form, `<generation>.<digest>` (`0.-` for none).
    pub fn header(&self) -> String {
        format!(
            "{}.{}",
            self.generation,
            self.digest.as_deref().unwrap_or("-")
        )
    }

    fn parse(text: &str) -> Option<Self> {
        let (generation, digest) = text.split_once('.')?;
        let generation = generation.parse().ok()?;
        let digest = match digest {
            "-" => None,
            d if d.len() == 16 && d.bytes().all(|b| b.is_ascii_hexdigit()) => Some(d.to_owned()),
            _ => return None,
        };
        Some(Self { generation, digest })
    }
}

/// The digest of a configuration document, as [`Known`] carries it: 16 hex characters of SHA-256.
pub fn digest(document: &[u8]) -> String {
    sha256_hex(&[document])[..16].to_owned()
}

/// A request for the configuration: what the filter signs and the controller checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigRequest {
    pub timestamp: u64,
    /// 32 lowercase hex characters.
    pub nonce: String,
    pub known: Known,
    pub proxy: String,
}

impl ConfigRequest {
    /// The request's headers, signed under `key`.
    pub fn headers(&self, key: &ChannelKey) -> Vec<(&'static str, String)> {
        let key_id = key.id_hex();
        let timestamp = self.timestamp.to_string();
        let known = self.known.header();
        let mac = hmac(
            Algorithm::Sha256,
            key.request_key.expose(),
            &signed_parts(&key_id, &timestamp, &self.nonce, &known, &self.proxy),
        );
        vec![
            (KEY_ID_HEADER, key_id),
            (TIMESTAMP_HEADER, timestamp),
            (NONCE_HEADER, self.nonce.clone()),
            (KNOWN_HEADER, known),
            (PROXY_HEADER, self.proxy.clone()),
            (SIGNATURE_HEADER, format!("{SCHEME}{}", hex::encode(mac))),
        ]
    }

    /// Checks a request's headers (read through `header`) against `keys` at `now`: the request and the
    /// index of the key it was signed with. The timestamp is checked before any MAC is computed. Replays
    /// within the window are the caller's to refuse, by the returned signature.
    pub fn verify<'a>(
        header: impl Fn(&str) -> Option<&'a str>,
        keys: &[ChannelKey],
        now: u64,
    ) -> Result<VerifiedRequest, ChannelError> {
        let get = |name: &'static str| {
            header(name)
                .map(str::trim)
                .ok_or(ChannelError::MissingHeader(name))
        };
        let key_id = get(KEY_ID_HEADER)?;
        let key_index = keys
            .iter()
            .position(|key| key.id_hex() == key_id)
            .ok_or(ChannelError::UnknownKey)?;
        let timestamp_text = get(TIMESTAMP_HEADER)?;
        let timestamp: u64 = timestamp_text
            .parse()
            .map_err(|_| ChannelError::MalformedHeader(TIMESTAMP_HEADER))?;
        if timestamp.abs_diff(now) > TOLERANCE_SECS {
            return Err(ChannelError::StaleTimestamp);
        }
        let nonce = get(NONCE_HEADER)?;
        if nonce.len() != REQUEST_NONCE_LEN || !nonce.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ChannelError::MalformedHeader(NONCE_HEADER));
        }
        let known_text = get(KNOWN_HEADER)?;
        let known = Known::parse(known_text).ok_or(ChannelError::MalformedHeader(KNOWN_HEADER))?;
        let proxy = get(PROXY_HEADER)?;
        if !valid_proxy(proxy) {
            return Err(ChannelError::MalformedHeader(PROXY_HEADER));
        }
        let signature = get(SIGNATURE_HEADER)?
            .strip_prefix(SCHEME)
            .ok_or(ChannelError::MalformedHeader(SIGNATURE_HEADER))?;
        let mac: [u8; 32] = hex::decode(signature)
            .ok()
            .and_then(|mac| mac.try_into().ok())
            .ok_or(ChannelError::MalformedHeader(SIGNATURE_HEADER))?;
        let parts = signed_parts(key_id, timestamp_text, nonce, known_text, proxy);
        if !hmac_matches(
            Algorithm::Sha256,
            keys[key_index].request_key.expose(),
            &parts,
            &mac,
        ) {
            return Err(ChannelError::SignatureMismatch);
        }
        Ok(VerifiedRequest {
            request: ConfigRequest {
                timestamp,
                nonce: nonce.to_ascii_lowercase(),
                known,
                proxy: proxy.to_owned(),
            },
            key_index,
            mac,
        })
    }
}

/// A request that verified: what it asks, the key it was signed with, and its MAC (which the controller
/// remembers to refuse a replay).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedRequest {
    pub request: ConfigRequest,
    pub key_index: usize,
    pub mac: [u8; 32],
}

/// The parts the request's signature covers, newline-separated and in header order.
fn signed_parts<'a>(
    key_id: &'a str,
    timestamp: &'a str,
    nonce: &'a str,
    known: &'a str,
    proxy: &'a str,
) -> [&'a [u8]; 9] {
    [
        key_id.as_bytes(),
        b"\n",
        timestamp.as_bytes(),
        b"\n",
        nonce.as_bytes(),
        b"\n",
        known.as_bytes(),
        b"\n",
        proxy.as_bytes(),
    ]
}

/// A proxy name: 1 to [`MAX_PROXY_LEN`] bytes of letters, digits and `._:/-` (no newline can be
/// smuggled into the signed text, nothing odd reaches the receivers' status).
pub fn valid_proxy(proxy: &str) -> bool {
    !proxy.is_empty()
        && proxy.len() <= MAX_PROXY_LEN
        && proxy
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:/-".contains(&b))
}

/// The envelope of `document` at `generation`, sealed under `key` for the request whose nonce is
/// `request_nonce`, with `aead_nonce` (24 fresh random bytes).
pub fn seal(
    key: &ChannelKey,
    generation: u64,
    request_nonce: &str,
    document: &[u8],
    aead_nonce: [u8; NONCE_LEN],
) -> Vec<u8> {
    let mut envelope = Vec::with_capacity(ENVELOPE_HEADER_LEN + document.len() + 16);
    envelope.extend_from_slice(MAGIC);
    envelope.extend_from_slice(&key.id);
    envelope.extend_from_slice(&generation.to_be_bytes());
    envelope.extend_from_slice(&aead_nonce);
    let associated = associated_data(&key.id, generation, request_nonce);
    envelope.extend_from_slice(&crypto::seal(
        &key.seal_key,
        &aead_nonce,
        &associated,
        document,
    ));
    envelope
}

/// An envelope that opened: the generation and the document.
#[derive(Debug, PartialEq, Eq)]
pub struct Opened {
    pub generation: u64,
    pub document: Vec<u8>,
}

/// Opens an envelope answering the request whose nonce was `request_nonce`, under whichever of `keys` it
/// names.
pub fn open(
    keys: &[ChannelKey],
    request_nonce: &str,
    envelope: &[u8],
) -> Result<Opened, ChannelError> {
    if envelope.len() < ENVELOPE_HEADER_LEN || !envelope.starts_with(MAGIC) {
        return Err(ChannelError::MalformedEnvelope);
    }
    let (header, ciphertext) = envelope.split_at(ENVELOPE_HEADER_LEN);
    let key_id = &header[MAGIC.len()..MAGIC.len() + KEY_ID_LEN];
    let generation_bytes = &header[MAGIC.len() + KEY_ID_LEN..MAGIC.len() + KEY_ID_LEN + 8];
    let mut generation = [0u8; 8];
    generation.copy_from_slice(generation_bytes);
    let generation = u64::from_be_bytes(generation);
    let mut aead_nonce = [0u8; NONCE_LEN];
    aead_nonce.copy_from_slice(&header[ENVELOPE_HEADER_LEN - NONCE_LEN..]);
    let key = keys
        .iter()
        .find(|key| key.id.as_slice() == key_id)
        .ok_or(ChannelError::UnknownKey)?;
    let associated = associated_data(&key.id, generation, request_nonce);
    let document = crypto::open(&key.seal_key, &aead_nonce, &associated, ciphertext)
        .ok_or(ChannelError::EnvelopeNotAuthentic)?;
    Ok(Opened {
        generation,
        document,
    })
}

fn associated_data(key_id: &[u8; KEY_ID_LEN], generation: u64, request_nonce: &str) -> Vec<u8> {
    let mut data = Vec::with_capacity(MAGIC.len() + KEY_ID_LEN + 8 + request_nonce.len());
    data.extend_from_slice(MAGIC);
    data.extend_from_slice(key_id);
    data.extend_from_slice(&generation.to_be_bytes());
    data.extend_from_slice(request_nonce.to_ascii_lowercase().as_bytes());
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    const MATERIAL: &[u8] = b"channel-key-0123456789abcdef0123456789";
    const OTHER: &[u8] = b"another-channel-key-0123456789abcdef";
    const NONCE: &str = "00112233445566778899aabbccddeeff";
    const NOW: u64 = 1_800_000_000;

    /// A session key for these tests, derived from `material` as an agreement would derive it.
    fn key(material: &[u8]) -> ChannelKey {
        let mut id = [0u8; KEY_ID_LEN];
        id.copy_from_slice(&crypto::derive_key(material, SALT, b"id")[..KEY_ID_LEN]);
        ChannelKey::agreed(id, &crypto::derive_key(material, SALT, b"master"))
    }

    type Headers = Vec<(&'static str, String)>;
    /// A named case: headers, the clock, what is refused.
    type RequestCase = (&'static str, Headers, u64, ChannelError);
    /// A named case: the keys held, the request's nonce, the envelope, what is refused.
    type EnvelopeCase = (
        &'static str,
        Vec<ChannelKey>,
        &'static str,
        Vec<u8>,
        ChannelError,
    );

    fn request() -> ConfigRequest {
        ConfigRequest {
            timestamp: NOW,
            nonce: NONCE.into(),
            known: Known {
                generation: 7,
                digest: Some("0123456789abcdef".into()),
            },
            proxy: "envoy-default-hookgate-5d8f/10.0.0.7".into(),
        }
    }

    fn verify(
        headers: &[(&'static str, String)],
        keys: &[ChannelKey],
        now: u64,
    ) -> Result<VerifiedRequest, ChannelError> {
        ConfigRequest::verify(
            |name| {
                headers
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| v.as_str())
            },
            keys,
            now,
        )
    }

    #[test]
    fn a_signed_request_verifies_under_the_key_it_names() {
        let keys = [key(OTHER), key(MATERIAL)];
        let verified = verify(&request().headers(&keys[1]), &keys, NOW + 30).unwrap();
        assert_eq!(verified.request, request());
        assert_eq!(verified.key_index, 1);
    }

    /// Every header is covered: changing any one of them (or the clock) refuses the request.
    #[test]
    fn altered_requests_are_refused() {
        let keys = [key(MATERIAL)];
        let signed = request().headers(&keys[0]);
        let with = |name: &str, value: &str| -> Headers {
            signed
                .iter()
                .map(|(n, v)| (*n, if *n == name { value.into() } else { v.clone() }))
                .collect()
        };
        let without = |name: &str| -> Headers {
            signed.iter().filter(|(n, _)| *n != name).cloned().collect()
        };
        let cases: Vec<RequestCase> = vec![
            (
                "another key id",
                with(KEY_ID_HEADER, &key(OTHER).id_hex()),
                NOW,
                ChannelError::UnknownKey,
            ),
            (
                "stale",
                signed.clone(),
                NOW + TOLERANCE_SECS + 1,
                ChannelError::StaleTimestamp,
            ),
            (
                "from the future",
                signed.clone(),
                NOW - TOLERANCE_SECS - 1,
                ChannelError::StaleTimestamp,
            ),
            (
                "another timestamp",
                with(TIMESTAMP_HEADER, &(NOW + 1).to_string()),
                NOW,
                ChannelError::SignatureMismatch,
            ),
            (
                "another nonce",
                with(NONCE_HEADER, "ffeeddccbbaa99887766554433221100"),
                NOW,
                ChannelError::SignatureMismatch,
            ),
            (
                "another known generation",
                with(KNOWN_HEADER, "8.0123456789abcdef"),
                NOW,
                ChannelError::SignatureMismatch,
            ),
            (
                "another proxy",
                with(PROXY_HEADER, "envoy-other"),
                NOW,
                ChannelError::SignatureMismatch,
            ),
            (
                "short nonce",
                with(NONCE_HEADER, "0011"),
                NOW,
                ChannelError::MalformedHeader(NONCE_HEADER),
            ),
            (
                "newline in the proxy",
                with(PROXY_HEADER, "a\nb"),
                NOW,
                ChannelError::MalformedHeader(PROXY_HEADER),
            ),
            (
                "bad known",
                with(KNOWN_HEADER, "7"),
                NOW,
                ChannelError::MalformedHeader(KNOWN_HEADER),
            ),
            (
                "no signature",
                without(SIGNATURE_HEADER),
                NOW,
                ChannelError::MissingHeader(SIGNATURE_HEADER),
            ),
            (
                "signature not hex",
                with(SIGNATURE_HEADER, "v1=zz"),
                NOW,
                ChannelError::MalformedHeader(SIGNATURE_HEADER),
            ),
        ];
        for (case, headers, now, expected) in cases {
            assert_eq!(verify(&headers, &keys, now), Err(expected), "{case}");
        }
    }

    #[test]
    fn an_envelope_opens_only_for_the_request_it_answers() {
        let keys = [key(MATERIAL)];
        let document = br#"{"receivers":[]}"#;
        let envelope = seal(&keys[0], 42, NONCE, document, [7; 24]);
        assert_eq!(
            open(&keys, NONCE, &envelope),
            Ok(Opened {
                generation: 42,
                document: document.to_vec()
            })
        );
        assert!(
            !envelope.windows(document.len()).any(|w| w == document),
            "the document is encrypted"
        );
        let mut later_generation = envelope.clone();
        later_generation[MAGIC.len() + KEY_ID_LEN + 7] ^= 1;
        let mut altered = envelope.clone();
        *altered.last_mut().unwrap() ^= 1;
        let cases: Vec<EnvelopeCase> = vec![
            (
                "replayed to another request",
                keys.to_vec(),
                "ffeeddccbbaa99887766554433221100",
                envelope.clone(),
                ChannelError::EnvelopeNotAuthentic,
            ),
            (
                "generation rewritten",
                keys.to_vec(),
                NONCE,
                later_generation,
                ChannelError::EnvelopeNotAuthentic,
            ),
            (
                "ciphertext altered",
                keys.to_vec(),
                NONCE,
                altered,
                ChannelError::EnvelopeNotAuthentic,
            ),
            (
                "a key the filter does not hold",
                vec![key(OTHER)],
                NONCE,
                envelope.clone(),
                ChannelError::UnknownKey,
            ),
            (
                "truncated",
                keys.to_vec(),
                NONCE,
                envelope[..10].to_vec(),
                ChannelError::MalformedEnvelope,
            ),
            (
                "not an envelope",
                keys.to_vec(),
                NONCE,
                document.to_vec(),
                ChannelError::MalformedEnvelope,
            ),
        ];
        for (case, keys, nonce, envelope, expected) in cases {
            assert_eq!(open(&keys, nonce, &envelope), Err(expected), "{case}");
        }
    }

    #[test]
    fn keys_are_never_shown() {
        let ours = key(MATERIAL);
        let shown = format!("{ours:?}");
        assert_eq!(shown, format!("ChannelKey({})", ours.id_hex()));
        assert_eq!(ours.id_hex().len(), 16);
        assert_ne!(ours.id_hex(), key(OTHER).id_hex());
    }

    #[test]
    fn known_reads_back() {
        for known in [
            Known::default(),
            Known {
                generation: u64::MAX,
                digest: Some(digest(b"x")),
            },
        ] {
            assert_eq!(Known::parse(&known.header()), Some(known));
        }
        for bad in ["", "1", "x.-", "1.abc", "1.0123456789abcdeg"] {
            assert_eq!(Known::parse(bad), None, "{bad}");
        }
    }
}
