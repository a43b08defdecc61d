//! Who may receive the configuration (docs/live-configuration.md, "Enrollment"). No secret is given to the
//! proxies: anything in Envoy's configuration or environment can be read by another extension on the same
//! proxies (its own `hostKeys`; a call to the cluster Envoy Gateway builds for its Prometheus endpoint, which
//! reaches Envoy's admin `/config_dump`; a stream on the xDS cluster). So:
//!
//! - The controller has a static X25519 key; the proxies' bootstrap holds only its public key.
//! - Each Wasm VM draws a key of its own when it starts. The two agree on a session key ([`ChannelKey`]) that
//!   signs the VM's requests and seals the controller's answers: nobody else on the way reads them.
//! - Another extension can draw a key too, so the controller serves a VM only once it is *confirmed*: the
//!   controller sends a confirmation, sealed under the session key, to the proxy's webhook listener, on a
//!   path of hookgate's own route ([`CONFIRMATION_PATH`]). Only hookgate's filter runs there; it keeps the
//!   envelope in its shared data, which is per `vm_id` (Envoy Gateway gives every policy its own), and the VM
//!   it is for opens it and presents the value in its next request. Another extension never sees requests
//!   on hookgate's route nor its shared data, so it is never confirmed.
//!
//! The confirmation value is a keyed hash of the VM's public key under the controller's key: every replica
//! computes the same one, with no state to share.

use std::fmt;

use subtle::ConstantTimeEq;
use x25519_dalek::{PublicKey, StaticSecret};

use crate::channel::{self, ChannelError, ChannelKey, KEY_ID_LEN};
use crate::crypto::{self, hmac, Algorithm};

/// Where the controller delivers a confirmation: on hookgate's route, answered by the filter itself.
pub const CONFIRMATION_PATH: &str = "/hook/.well-known/hookgate/confirmation";
/// The VM's public key (64 hex), on every configuration request.
pub const VM_KEY_HEADER: &str = "x-hookgate-vm-key";
/// The confirmation value the VM opened (32 hex), once it has one.
pub const CONFIRMATION_HEADER: &str = "x-hookgate-confirmation";
/// The largest confirmation body the filter reads: the VM's key, a dot, the envelope (all hex).
pub const MAX_CONFIRMATION_BODY: usize = 512;

const SALT: &[u8] = b"hookgate enrollment v1";
/// What a confirmation envelope is sealed for, in place of a request's nonce: a confirmation never opens as
/// a configuration, nor one as the other.
const CONFIRMATION_NONCE: &str = "confirmation";
const KEY_LEN: usize = 32;

/// Why a key is refused. Never shows the key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyError {
    NotHex,
    WrongLength,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotHex => f.write_str("is not hexadecimal"),
            Self::WrongLength => {
                write!(f, "is not {} hex characters ({KEY_LEN} bytes)", 2 * KEY_LEN)
            }
        }
    }
}

impl std::error::Error for KeyError {}

fn key_bytes(text: &[u8]) -> Result<[u8; KEY_LEN], KeyError> {
    if text.len() != 2 * KEY_LEN {
        return Err(KeyError::WrongLength);
    }
    let mut bytes = [0u8; KEY_LEN];
    hex::decode_to_slice(text, &mut bytes).map_err(|_| KeyError::NotHex)?;
    Ok(bytes)
}

/// A public key: the controller's (in the proxies' bootstrap) or a VM's (in its requests).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Public([u8; KEY_LEN]);

impl fmt::Debug for Public {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Public({})", self.hex())
    }
}

impl Public {
    pub fn from_hex(text: &[u8]) -> Result<Self, KeyError> {
        key_bytes(text).map(Self)
    }

    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The id requests and envelopes name a controller key by (16 hex).
    pub fn id(&self) -> [u8; KEY_ID_LEN] {
        let mut id = [0u8; KEY_ID_LEN];
        id.copy_from_slice(&crypto::derive_key(&self.0, SALT, b"id")[..KEY_ID_LEN]);
        id
    }

    pub fn id_hex(&self) -> String {
        hex::encode(self.id())
    }
}

/// The session key of `vm` and `controller` from their shared secret; `None` for a public key of low
/// order (the shared secret would be known to anyone).
fn session(
    secret: &StaticSecret,
    vm: &Public,
    controller: &Public,
    other: &Public,
) -> Option<ChannelKey> {
    let shared = secret.diffie_hellman(&PublicKey::from(other.0));
    if !shared.was_contributory() {
        return None;
    }
    let mut info = Vec::with_capacity(7 + 2 * KEY_LEN);
    info.extend_from_slice(b"session");
    info.extend_from_slice(&vm.0);
    info.extend_from_slice(&controller.0);
    let master = crypto::derive_key(shared.as_bytes(), SALT, &info);
    Some(ChannelKey::agreed(controller.id(), &master))
}

/// The controller's key. `Debug` shows the public half only.
#[derive(Clone)]
pub struct ControllerKey {
    secret: StaticSecret,
    public: Public,
    confirmation_key: [u8; KEY_LEN],
}

impl fmt::Debug for ControllerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ControllerKey({})", self.public.id_hex())
    }
}

impl ControllerKey {
    /// From the Secret's text: 64 hex characters (32 random bytes: `hookgate token`).
    pub fn from_hex(text: &[u8]) -> Result<Self, KeyError> {
        let bytes = key_bytes(text)?;
        let secret = StaticSecret::from(bytes);
        let public = Public(PublicKey::from(&secret).to_bytes());
        Ok(Self {
            secret,
            public,
            confirmation_key: crypto::derive_key(&bytes, SALT, b"confirmation"),
        })
    }

    pub fn public(&self) -> Public {
        self.public
    }

    /// The session key with the VM whose public key is `vm`.
    pub fn session(&self, vm: &Public) -> Option<ChannelKey> {
        session(&self.secret, vm, &self.public, vm)
    }

    /// The value that confirms `vm` (32 hex): the same at every replica.
    pub fn confirmation(&self, vm: &Public) -> String {
        hex::encode(&hmac(Algorithm::Sha256, &self.confirmation_key, &[&vm.0])[..16])
    }

    /// Whether `presented` is `vm`'s confirmation, compared in constant time.
    pub fn confirms(&self, vm: &Public, presented: &str) -> bool {
        bool::from(self.confirmation(vm).as_bytes().ct_eq(presented.as_bytes()))
    }

    /// The body the controller posts to [`CONFIRMATION_PATH`]: `<vm key hex>.<hex of the confirmation
    /// sealed under the session key>`; `None` for a key of low order.
    pub fn confirmation_body(&self, vm: &Public, aead_nonce: [u8; 24]) -> Option<String> {
        let session = self.session(vm)?;
        let confirmation = self.confirmation(vm);
        let envelope = channel::seal(
            &session,
            0,
            CONFIRMATION_NONCE,
            confirmation.as_bytes(),
            aead_nonce,
        );
        Some(format!("{}.{}", vm.hex(), hex::encode(envelope)))
    }
}

/// A VM's own key, drawn when it starts. `Debug` shows the public half only.
pub struct VmKey {
    secret: StaticSecret,
    public: Public,
}

impl fmt::Debug for VmKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VmKey({})", self.public.hex())
    }
}

impl VmKey {
    /// From 32 random bytes.
    pub fn new(random: [u8; KEY_LEN]) -> Self {
        let secret = StaticSecret::from(random);
        let public = Public(PublicKey::from(&secret).to_bytes());
        Self { secret, public }
    }

    pub fn public(&self) -> Public {
        self.public
    }

    /// The session key with the controller whose public key is `controller`.
    pub fn session(&self, controller: &Public) -> Option<ChannelKey> {
        session(&self.secret, &self.public, controller, controller)
    }
}

/// Reads a confirmation body: the VM's key and the envelope, or `None` when it is not one.
pub fn read_confirmation_body(body: &[u8]) -> Option<(Public, Vec<u8>)> {
    if body.len() > MAX_CONFIRMATION_BODY {
        return None;
    }
    let dot = body.iter().position(|b| *b == b'.')?;
    let (key, envelope) = (&body[..dot], &body[dot + 1..]);
    let key = Public::from_hex(key).ok()?;
    let envelope = hex::decode(envelope).ok()?;
    Some((key, envelope))
}

/// The confirmation value in `envelope`, opened under one of the VM's `sessions`.
pub fn open_confirmation(sessions: &[ChannelKey], envelope: &[u8]) -> Result<String, ChannelError> {
    let opened = channel::open(sessions, CONFIRMATION_NONCE, envelope)?;
    String::from_utf8(opened.document).map_err(|_| ChannelError::MalformedEnvelope)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::{open, seal, ConfigRequest, Known};

    const CONTROLLER: &str = "4f1b0e3c2a5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7";
    const OTHER_CONTROLLER: &str =
        "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    fn controller() -> ControllerKey {
        ControllerKey::from_hex(CONTROLLER.as_bytes()).unwrap()
    }

    #[test]
    fn vm_and_controller_agree_and_others_do_not() {
        let controller = controller();
        let vm = VmKey::new([7; 32]);
        let probe = VmKey::new([9; 32]);
        let ours = vm.session(&controller.public()).unwrap();
        let theirs = controller.session(&vm.public()).unwrap();
        let envelope = seal(&theirs, 5, "00".repeat(16).as_str(), b"document", [1; 24]);
        assert_eq!(
            open(&[ours], &"00".repeat(16), &envelope).unwrap().document,
            b"document"
        );
        // Another VM (another extension that drew its own key) cannot open what was sealed for this one.
        let probe_session = probe.session(&controller.public()).unwrap();
        assert_eq!(
            open(&[probe_session], &"00".repeat(16), &envelope),
            Err(ChannelError::EnvelopeNotAuthentic)
        );
        // The request of the VM verifies under the session the controller derives from its key.
        let request = ConfigRequest {
            timestamp: 1_800_000_000,
            nonce: "00".repeat(16),
            known: Known::default(),
            proxy: "envoy".into(),
        };
        let headers = request.headers(&vm.session(&controller.public()).unwrap());
        let header = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.as_str())
        };
        assert!(ConfigRequest::verify(header, &[theirs], 1_800_000_000).is_ok());
        assert_eq!(
            header(channel::KEY_ID_HEADER),
            Some(controller.public().id_hex().as_str())
        );
    }

    #[test]
    fn a_confirmation_opens_only_for_its_vm_and_never_as_a_configuration() {
        let controller = controller();
        let vm = VmKey::new([7; 32]);
        let probe = VmKey::new([9; 32]);
        let body = controller.confirmation_body(&vm.public(), [3; 24]).unwrap();
        let (key, envelope) = read_confirmation_body(body.as_bytes()).unwrap();
        assert_eq!(key, vm.public());
        let sessions = [vm.session(&controller.public()).unwrap()];
        let value = open_confirmation(&sessions, &envelope).unwrap();
        assert!(controller.confirms(&vm.public(), &value));
        assert!(!controller.confirms(&probe.public(), &value), "per VM");
        let probe_sessions = [probe.session(&controller.public()).unwrap()];
        assert!(open_confirmation(&probe_sessions, &envelope).is_err());
        assert!(
            open(&sessions, &"00".repeat(16), &envelope).is_err(),
            "not a configuration"
        );
        // Every replica (the same key) computes the same value; another controller key another one.
        let again = ControllerKey::from_hex(CONTROLLER.as_bytes()).unwrap();
        assert_eq!(again.confirmation(&vm.public()), value);
        let other = ControllerKey::from_hex(OTHER_CONTROLLER.as_bytes()).unwrap();
        assert_ne!(other.confirmation(&vm.public()), value);
    }

    #[test]
    fn bodies_and_keys_are_read_strictly() {
        let controller = controller();
        let vm = VmKey::new([7; 32]);
        let body = controller.confirmation_body(&vm.public(), [3; 24]).unwrap();
        assert!(body.len() <= MAX_CONFIRMATION_BODY);
        let long = "a".repeat(MAX_CONFIRMATION_BODY + 1);
        for (case, bad) in [
            ("no dot", vm.public().hex()),
            ("short key", format!("abcd.{}", "00".repeat(40))),
            ("envelope not hex", format!("{}.zz", vm.public().hex())),
            ("too long", long),
        ] {
            assert!(read_confirmation_body(bad.as_bytes()).is_none(), "{case}");
        }
        for (case, bad, error) in [
            ("short", "abcd".to_string(), KeyError::WrongLength),
            ("not hex", "zz".repeat(32), KeyError::NotHex),
        ] {
            assert_eq!(
                ControllerKey::from_hex(bad.as_bytes()).unwrap_err(),
                error,
                "{case}"
            );
            assert_eq!(
                Public::from_hex(bad.as_bytes()).unwrap_err(),
                error,
                "{case}"
            );
        }
        assert!(!format!("{controller:?}").contains(CONTROLLER));
        // A public key of low order (all zeros) gives no session: its shared secret is known to all.
        let zero = Public::from_hex("00".repeat(32).as_bytes()).unwrap();
        assert!(controller.session(&zero).is_none());
        assert!(controller.confirmation_body(&zero, [3; 24]).is_none());
    }
}
