//! The filter's side of the configuration channel (docs/live-configuration.md): the bootstrap that says how
//! to reach the controller, and [`ConfigSource`], which decides when to ask for the configuration and what
//! to make of each answer. The wire contract (signed request, sealed answer) is
//! [`hookgate_protocol::channel`], the enrollment (this VM's key, the session keys, the confirmation) is
//! [`hookgate_protocol::enrollment`]; the proxy-wasm glue only sends what [`ConfigSource::request`] builds
//! and hands back what came.
//!
//! The bootstrap holds no secret: only the controller's public keys. Each VM draws a key of its own and
//! agrees a session key with each controller key; the controller serves it once it is *confirmed*: the
//! controller posts a confirmation to [`CONFIRMATION_PATH`] on hookgate's route, the filter keeps it in
//! the shared data of its `vm_id` ([`confirmation_slot`]), and the VM it is for opens it
//! ([`ConfigSource::confirmation`]) and presents its value in its next requests.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use crate::config::wire::{self, Object, SecretList, SecretText};
use crate::config::{Config, ConfigError};
use crate::outcome::Reply;
use hookgate_protocol::channel::{
    self, ChannelKey, ConfigRequest, Known, CONFIGURATION_PATH, LONG_POLL_SECS, MAX_PROXY_LEN,
    TOLERANCE_SECS,
};
use hookgate_protocol::enrollment::{
    self, KeyError, Public, VmKey, CONFIRMATION_HEADER, MAX_CONFIRMATION_BODY, VM_KEY_HEADER,
};

pub use hookgate_protocol::enrollment::CONFIRMATION_PATH;

/// The `:authority` of the requests when the bootstrap names none: the controller's Service.
pub const DEFAULT_AUTHORITY: &str = "hookgate-controller";
/// The controller holds a request up to [`LONG_POLL_SECS`]: the call waits that long and a little more.
pub const DEFAULT_TIMEOUT_MS: u64 = LONG_POLL_SECS * 1000 + 5000;
/// A timeout shorter than the long poll would end every call of an up-to-date proxy in a failure.
pub const MIN_TIMEOUT_MS: u64 = LONG_POLL_SECS * 1000 + 1000;
pub const MAX_TIMEOUT_MS: u64 = 300_000;
/// One key, and a second while the controller's key changes.
pub const MAX_CONTROLLER_KEYS: usize = 2;
/// The wait after the first failed call; it doubles with each failure after it, up to [`MAX_RETRY_SECS`].
pub const FIRST_RETRY_SECS: u64 = 1;
pub const MAX_RETRY_SECS: u64 = 8;
/// The least time between two calls, even when the controller answers at once: a controller that does
/// not hold its answers must not make every worker of every proxy call it in a loop.
pub const MIN_INTERVAL_SECS: u64 = 1;
/// The wait after a 202 (this VM not confirmed yet): the confirmation is on its way, so the next call
/// is soon, and the wait does not grow.
pub const PENDING_RETRY_SECS: u64 = 1;
/// How long after its timeout a call without any answer counts as lost (the host always answers, a
/// timeout included: this only keeps polling from stopping for good if it ever does not).
const LOST_AFTER_TIMEOUT_SECS: u64 = 5;

/// The largest answer read: a sealed document of about 1,000 receivers is under 1 MiB.
pub const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;
/// How far ahead of this proxy's clock a generation may be.
pub const MAX_CLOCK_AHEAD_SECS: u64 = 300;

/// Counts the answers refused ([`Answer::Refused`]).
pub const REFUSED_METRIC: &str = "hookgate_configuration_refused_total";
/// Seconds since the controller last answered 200 or 304 (since the start, before it ever did).
pub const AGE_METRIC: &str = "hookgate_configuration_age_seconds";
/// Milliseconds the last configuration applied took this VM to open and compile.
pub const LOAD_METRIC: &str = "hookgate_configuration_load_milliseconds";
/// Receivers in the configuration this VM serves.
pub const RECEIVERS_METRIC: &str = "hookgate_configuration_receivers";
/// Counts the confirmations posted to [`CONFIRMATION_PATH`] and stored, for any VM of this `vm_id`.
pub const CONFIRMATIONS_METRIC: &str = "hookgate_confirmations_received_total";

/// The shared-data slots confirmations are kept in: this prefix and the VM's whole key (hex).
pub const CONFIRMATION_SLOT_PREFIX: &str = "hookgate.confirmation.";
/// Where a VM of this filter registers its key in the shared data: a posted confirmation is kept only for
/// a key registered there, so whoever posts cannot fill or overwrite slots without knowing a VM's key
/// (which travels only in its requests to the controller).
pub const REGISTRATION_PREFIX: &str = "hookgate.vm.";

/// The plugin configuration in live mode: how to reach the controller, and its public keys. Holds no
/// secret. `Debug` shows the keys' ids.
pub struct Bootstrap {
    /// The Envoy cluster that reaches the controller (the webhook route's own).
    pub cluster: String,
    pub authority: String,
    pub timeout: Duration,
    /// The controller's public keys: the session with the first signs the requests; an answer opens
    /// under the session with whichever of them it names.
    pub keys: Vec<Public>,
}

impl fmt::Debug for Bootstrap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids: Vec<String> = self.keys.iter().map(Public::id_hex).collect();
        f.debug_struct("Bootstrap")
            .field("cluster", &self.cluster)
            .field("authority", &self.authority)
            .field("timeout", &self.timeout)
            .field("controller_key_ids", &ids)
            .finish()
    }
}

/// The bootstrap as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct WireBootstrap {
    controller: Object<WireController>,
    /// Read as secret material would be (a wrong value is described by its kind only): a public key is
    /// no secret, but the controller's private key pasted here by mistake must not be quoted back.
    controller_keys: SecretList,
}

/// Why a plugin configuration holding receivers is refused.
pub const RECEIVERS_ARE_OBJECTS: &str = "receivers are not read from the plugin configuration: they are \
     `Receiver` objects (hookgate.io/v1alpha1) with their Secrets, which the controller serves to the filter; \
     the plugin configuration is the bootstrap (`controller`, `controllerKeys`), see \
     docs/live-configuration.md";

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct WireController {
    cluster: String,
    authority: Option<String>,
    timeout_ms: Option<u64>,
}

impl Bootstrap {
    /// Parses the bootstrap from JSON text, as [`Bootstrap::read`] reads it.
    pub fn parse(json: &[u8]) -> Result<Self, ConfigError> {
        // serde_json's syntax errors say where, never what: no key is echoed.
        let raw: Value = serde_json::from_slice(json)
            .map_err(|e| error(wire::DOCUMENT, format!("not valid JSON: {e}")))?;
        Self::read(&raw)
    }

    /// Reads the bootstrap from `raw` (valid JSON). Errors name the field and never show a key.
    pub fn read(raw: &Value) -> Result<Self, ConfigError> {
        // The plugin configuration of before receivers were objects: say where they went.
        if raw.get("receivers").is_some() && raw.get("controller").is_none() {
            return Err(error("receivers", RECEIVERS_ARE_OBJECTS));
        }
        let WireBootstrap {
            controller: Object(controller),
            controller_keys: SecretList(texts),
        } = wire::read_object(raw)?;
        let cluster = controller.cluster;
        if cluster.is_empty() || cluster.chars().any(char::is_control) {
            return Err(error(
                "controller.cluster",
                "must name the Envoy cluster that reaches the controller \
                 (httproute/<namespace>/<name>/rule/<index>)",
            ));
        }
        let authority = controller
            .authority
            .unwrap_or_else(|| DEFAULT_AUTHORITY.to_string());
        if authority.is_empty() || !authority.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(error(
                "controller.authority",
                "must be a host name (printable ASCII, no spaces)",
            ));
        }
        let timeout_ms = controller.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS);
        if !(MIN_TIMEOUT_MS..=MAX_TIMEOUT_MS).contains(&timeout_ms) {
            return Err(error(
                "controller.timeoutMs",
                format!(
                    "must be from {MIN_TIMEOUT_MS} to {MAX_TIMEOUT_MS} (milliseconds): the controller \
                     holds a request up to {} ms",
                    LONG_POLL_SECS * 1000
                ),
            ));
        }
        Ok(Self {
            cluster,
            authority,
            timeout: Duration::from_millis(timeout_ms),
            keys: controller_keys(texts)?,
        })
    }
}

/// The controller's public keys, each 64 hex characters, usable (see [`LOW_ORDER`]) and given once.
fn controller_keys(texts: Vec<SecretText>) -> Result<Vec<Public>, ConfigError> {
    if texts.is_empty() || texts.len() > MAX_CONTROLLER_KEYS {
        return Err(error(
            "controllerKeys",
            "must hold the controller's public key, or two while it changes",
        ));
    }
    // A key of low order gives no session with any VM key (X25519 clears the cofactor): one throwaway
    // key tells, here, rather than every VM at its start.
    let probe = VmKey::new([1; 32]);
    let mut keys: Vec<Public> = Vec::with_capacity(texts.len());
    for (index, SecretText(text)) in texts.into_iter().enumerate() {
        let field = format!("controllerKeys[{index}]");
        let text = text.expose();
        let key = Public::from_hex(text).map_err(|e| error(&field, key_reason(e, text.len())))?;
        if probe.session(&key).is_none() {
            return Err(error(&field, LOW_ORDER));
        }
        if let Some(first) = keys.iter().position(|k| *k == key) {
            return Err(error(
                &field,
                format!("is the same key as controllerKeys[{first}]"),
            ));
        }
        keys.push(key);
    }
    Ok(keys)
}

/// Why a public key without a session is refused.
const LOW_ORDER: &str = "is not a usable public key (a point of low order, whose shared secret \
                         anyone knows): give the controller's public key";

/// Why a controller key is refused: its length at most, never its content.
fn key_reason(error: KeyError, length: usize) -> String {
    match error {
        KeyError::WrongLength => format!(
            "must be the controller's public key, 64 hex characters (32 bytes), not {length} characters"
        ),
        KeyError::NotHex => {
            "must be the controller's public key, 64 hex characters: it is not hexadecimal".to_string()
        }
    }
}

fn error(field: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        receiver: None,
        field: field.into(),
        reason: reason.into(),
    }
}

/// The proxy's name for the requests (Envoy's node id): a byte the channel does not allow becomes `-`,
/// a long name is cut to [`MAX_PROXY_LEN`] bytes, and no name at all is `unknown`.
pub fn proxy_name(node_id: Option<&[u8]>) -> String {
    let name: String = node_id
        .unwrap_or_default()
        .iter()
        .take(MAX_PROXY_LEN)
        .map(|&b| {
            if b.is_ascii_alphanumeric() || b"._:/-".contains(&b) {
                char::from(b)
            } else {
                '-'
            }
        })
        .collect();
    if name.is_empty() {
        "unknown".into()
    } else {
        name
    }
}

/// The shared-data slot a confirmation for the VM whose key is `key` is kept in: the prefix and the whole
/// key (hex), one slot per VM. A post is stored only where that key is registered
/// ([`registration_for_slot`]), so no slot is made for a key no VM of this filter drew; a later post for
/// the same key replaces one not read yet.
pub fn confirmation_slot(key: &Public) -> String {
    format!("{CONFIRMATION_SLOT_PREFIX}{}", key.hex())
}

/// Where a VM registers `key` (see [`REGISTRATION_PREFIX`]).
pub fn registration(key: &Public) -> String {
    format!("{REGISTRATION_PREFIX}{}", key.hex())
}

/// The registration a confirmation kept in `slot` needs: the same key's.
pub fn registration_for_slot(slot: &str) -> String {
    format!(
        "{REGISTRATION_PREFIX}{}",
        slot.strip_prefix(CONFIRMATION_SLOT_PREFIX)
            .unwrap_or_default()
    )
}

/// Whether a request is a confirmation posted by the controller: a POST to exactly
/// [`CONFIRMATION_PATH`], its query ignored. Only in live mode does the filter take it.
pub fn is_confirmation_post(method: &str, path: &str) -> bool {
    method == "POST" && path.split(['?', '#']).next() == Some(CONFIRMATION_PATH)
}

/// What to do with a posted confirmation body: the slot to store the whole body in (then answer
/// [`confirmation_stored`]), or the refusal to answer. Never shows the body.
pub fn posted_confirmation(body: &[u8]) -> Result<String, Reply> {
    if body.is_empty() {
        return Err(confirmation_refused(400, "empty body"));
    }
    if body.len() > MAX_CONFIRMATION_BODY {
        return Err(confirmation_too_large());
    }
    match enrollment::read_confirmation_body(body) {
        Some((key, _)) => Ok(confirmation_slot(&key)),
        None => Err(confirmation_refused(400, "not a confirmation")),
    }
}

/// The answer to a confirmation stored: the VM it is for reads it at its next tick.
pub fn confirmation_stored() -> Reply {
    Reply {
        status: 202,
        body: r#"{"status":"accepted"}"#.into(),
    }
}

/// The answer to a confirmation body over [`MAX_CONFIRMATION_BODY`].
pub fn confirmation_too_large() -> Reply {
    confirmation_refused(413, "payload too large")
}

/// A refused post to [`CONFIRMATION_PATH`].
pub fn confirmation_refused(status: u32, reason: &str) -> Reply {
    Reply {
        status,
        body: format!(
            "{{\"status\":\"rejected\",\"reason\":{}}}",
            Value::from(reason)
        ),
    }
}

/// What an answer of the controller comes to.
#[derive(Debug)]
pub enum Answer {
    /// A new configuration to serve from now on, and its generation.
    Applied(Config, u64),
    /// Nothing newer: the configuration served stays.
    Unchanged,
    /// The controller waits for this VM to be confirmed (202): the confirmation is on its way to the
    /// proxy. Not contact (the age grows); the next call is [`PENDING_RETRY_SECS`] later.
    Pending,
    /// The controller's answer is not to be served: not sealed for this request (a replay), altered,
    /// under a key the filter does not hold, older than the configuration served, or not compiling here.
    /// The configuration served stays. The reason names which, never any content.
    Refused(String),
    /// No usable answer: the controller was not reached, is not ready, or refused the request. The
    /// configuration served stays and the next call waits.
    Failed(String),
}

/// A call sent and not answered yet.
struct InFlight {
    nonce: String,
    sent_at: u64,
}

/// The state of one VM's polling: its key and sessions, its confirmation, what it serves, the call in
/// flight, when it last heard from the controller, and how long to wait after a failure. Times are unix
/// seconds.
pub struct ConfigSource {
    bootstrap: Bootstrap,
    /// This VM's public key (its secret half is not kept: the sessions are all it is for).
    vm: Public,
    /// The session with each controller key, in the bootstrap's order.
    sessions: Vec<ChannelKey>,
    /// The confirmation value the controller sent this VM, once one opened.
    confirmation: Option<String>,
    /// The last answer was a 202: the controller has not taken this VM's confirmation (yet).
    awaiting: bool,
    known: Known,
    in_flight: Option<InFlight>,
    started: u64,
    last_contact: Option<u64>,
    /// No call before this time.
    next_at: u64,
    /// The wait the next failure sets.
    retry_delay: u64,
    /// The reason of the last failure, while failing.
    failure: Option<String>,
}

impl ConfigSource {
    /// The polling of a VM whose key is drawn from `vm_random` (32 random bytes), started at `now`.
    /// Refused when a controller key gives no session ([`Bootstrap::read`] refuses those already).
    pub fn new(bootstrap: Bootstrap, vm_random: [u8; 32], now: u64) -> Result<Self, ConfigError> {
        let vm = VmKey::new(vm_random);
        let sessions = bootstrap
            .keys
            .iter()
            .enumerate()
            .map(|(index, key)| {
                vm.session(key)
                    .ok_or_else(|| error(&format!("controllerKeys[{index}]"), LOW_ORDER))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if sessions.is_empty() {
            return Err(error(
                "controllerKeys",
                "must hold the controller's public key",
            ));
        }
        Ok(Self {
            bootstrap,
            vm: vm.public(),
            sessions,
            confirmation: None,
            awaiting: false,
            known: Known::default(),
            in_flight: None,
            started: now,
            last_contact: None,
            next_at: now,
            retry_delay: FIRST_RETRY_SECS,
            failure: None,
        })
    }

    pub fn bootstrap(&self) -> &Bootstrap {
        &self.bootstrap
    }

    /// This VM's public key.
    pub fn vm_key(&self) -> Public {
        self.vm
    }

    /// The configuration applied (`0.-` before the first).
    pub fn known(&self) -> &Known {
        &self.known
    }

    /// The reason of the last failure, while the calls fail (reset by a 200 or a 202).
    pub fn failing(&self) -> Option<&str> {
        self.failure.as_deref()
    }

    /// Whether a confirmation opened for this VM.
    pub fn confirmed(&self) -> bool {
        self.confirmation.is_some()
    }

    /// Whether the last answer was a 202: the controller has not taken this VM's confirmation (yet).
    pub fn awaiting(&self) -> bool {
        self.awaiting
    }

    /// Whether the glue is to look for a confirmation: none opened yet, or the controller still asks for
    /// one (it may have sent another).
    pub fn wants_confirmation(&self) -> bool {
        self.confirmation.is_none() || self.awaiting
    }

    /// The shared-data slot this VM's confirmation arrives in.
    pub fn slot(&self) -> String {
        confirmation_slot(&self.vm)
    }

    /// The envelope in `value` (the content of [`ConfigSource::slot`]: a whole posted body), if it is
    /// this VM's; `None` when it is another VM's (sharing the slot) or not a confirmation.
    pub fn envelope_in_slot(&self, value: &[u8]) -> Option<Vec<u8>> {
        let key_part = value.split(|b| *b == b'.').next()?;
        if !key_part.eq_ignore_ascii_case(self.vm.hex().as_bytes()) {
            return None;
        }
        let (key, envelope) = enrollment::read_confirmation_body(value)?;
        (key == self.vm).then_some(envelope)
    }

    /// Opens a confirmation `envelope` under this VM's sessions and keeps its value for the following
    /// requests; whether it opened. One that does not open (for another VM, from another controller key,
    /// altered) changes nothing.
    pub fn confirmation(&mut self, envelope: &[u8]) -> bool {
        match enrollment::open_confirmation(&self.sessions, envelope) {
            // It goes into a header: whatever opened must be a short hex value, as the controller makes.
            Ok(value)
                if !value.is_empty()
                    && value.len() <= 64
                    && value.bytes().all(|b| b.is_ascii_hexdigit()) =>
            {
                self.confirmation = Some(value);
                true
            }
            _ => false,
        }
    }

    /// Seconds since the controller last answered 200, or since the start if it never did.
    pub fn age(&self, now: u64) -> u64 {
        now.saturating_sub(self.last_contact.unwrap_or(self.started))
    }

    /// Whether a call is to be made at `now`: none in flight (or the one in flight is lost), and the wait
    /// after the last answer is over.
    pub fn due(&self, now: u64) -> bool {
        let lost = |call: &InFlight| now >= call.sent_at.saturating_add(self.lost_after_secs());
        self.in_flight.as_ref().is_none_or(lost) && now >= self.next_at
    }

    fn lost_after_secs(&self) -> u64 {
        self.bootstrap
            .timeout
            .as_secs()
            .saturating_add(LOST_AFTER_TIMEOUT_SECS)
    }

    /// The headers of the call to make at `now`, with `nonce` (16 random bytes as hex) and as `proxy`
    /// (see [`proxy_name`]); `None` when no call is due. Signed under the session with the first
    /// controller key, with this VM's key and, once it has one, its confirmation. The call is then in
    /// flight until [`ConfigSource::answer`].
    pub fn request(
        &mut self,
        now: u64,
        nonce: String,
        proxy: &str,
    ) -> Option<Vec<(&'static str, String)>> {
        if !self.due(now) {
            return None;
        }
        let session = self.sessions.first()?;
        let request = ConfigRequest {
            timestamp: now,
            nonce,
            known: self.known.clone(),
            proxy: proxy.to_owned(),
        };
        let mut headers = vec![
            (":method", "GET".to_owned()),
            (":path", CONFIGURATION_PATH.to_owned()),
            (":authority", self.bootstrap.authority.clone()),
        ];
        headers.extend(request.headers(session));
        headers.push((VM_KEY_HEADER, self.vm.hex()));
        if let Some(confirmation) = &self.confirmation {
            headers.push((CONFIRMATION_HEADER, confirmation.clone()));
        }
        // A lost call is replaced: an answer to it no longer opens, being sealed for its nonce.
        self.in_flight = Some(InFlight {
            nonce: request.nonce,
            sent_at: now,
        });
        Some(headers)
    }

    /// The call in flight could not be sent (`reason`: the host's status).
    pub fn not_sent(&mut self, now: u64, reason: &str) -> Answer {
        self.in_flight = None;
        let answer = Answer::Failed(format!("cannot call the controller's cluster: {reason}"));
        self.back_off(now, &answer);
        answer
    }

    /// What the answer to the call in flight comes to: its `:status` (`None`: no response, the
    /// connection reset) and its body.
    pub fn answer(&mut self, now: u64, status: Option<u16>, body: &[u8]) -> Answer {
        let Some(call) = self.in_flight.take() else {
            return Answer::Refused("an answer to no call in flight".into());
        };
        let answer = match status {
            Some(200) => self.open(now, &call.nonce, body),
            // The controller never takes back a confirmation: a 202 to a VM it confirmed and configured
            // is a fault (another key, another controller), and the configuration served ages.
            Some(202) if self.confirmed() && self.known.digest.is_some() => Answer::Failed(
                "the controller asks again for a confirmation (202) of this VM, which it confirmed and \
                 configured: is its key still one of controllerKeys?"
                    .into(),
            ),
            Some(202) => Answer::Pending,
            // Anyone on the way can answer 304: "unchanged" counts only sealed (an empty document).
            Some(304) => {
                Answer::Refused("a 304 proves nothing: the controller seals \"unchanged\"".into())
            }
            other => Answer::Failed(failure(other)),
        };
        if status == Some(202) {
            self.awaiting = true;
        }
        match &answer {
            Answer::Applied(..) | Answer::Unchanged => {
                self.awaiting = false;
                self.last_contact = Some(now);
                self.retry_delay = FIRST_RETRY_SECS;
                self.failure = None;
                self.next_at = now.max(call.sent_at.saturating_add(MIN_INTERVAL_SECS));
            }
            // Not contact: anyone on the way could answer 202. The wait does not grow.
            Answer::Pending => {
                self.retry_delay = FIRST_RETRY_SECS;
                self.failure = None;
                self.next_at = now.saturating_add(PENDING_RETRY_SECS);
            }
            // A refused answer waits as a failure does: a controller serving a document this filter
            // refuses would otherwise be asked again at once, by every worker, for ever.
            Answer::Refused(_) | Answer::Failed(_) => self.back_off(now, &answer),
        }
        answer
    }

    /// The answer to the call in flight was larger than [`MAX_ANSWER_BYTES`]: refused unread.
    pub fn oversized(&mut self, now: u64, size: usize) -> Answer {
        self.in_flight = None;
        let answer = Answer::Refused(format!(
            "an answer of {size} bytes, over the limit of {MAX_ANSWER_BYTES}"
        ));
        self.back_off(now, &answer);
        answer
    }

    /// Opens a 200's envelope, sealed for the request whose nonce was `nonce`, and compiles it. An
    /// empty document is the controller's sealed "unchanged".
    fn open(&mut self, now: u64, nonce: &str, body: &[u8]) -> Answer {
        let opened = match channel::open(&self.sessions, nonce, body) {
            Ok(opened) => opened,
            Err(error) => return Answer::Refused(error.to_string()),
        };
        if opened.document.is_empty() {
            return Answer::Unchanged;
        }
        // Generations are the controller's clock in milliseconds: one far ahead of this clock would
        // make every later, correct generation look older.
        let latest = now
            .saturating_add(MAX_CLOCK_AHEAD_SECS)
            .saturating_mul(1000);
        if opened.generation > latest {
            return Answer::Refused(format!(
                "generation {} is ahead of this proxy's clock by more than {MAX_CLOCK_AHEAD_SECS} s",
                opened.generation
            ));
        }
        let digest = channel::digest(&opened.document);
        // The same content is no rollback, whatever generation another replica gives it.
        if self.known.digest.as_deref() == Some(digest.as_str()) {
            return Answer::Unchanged;
        }
        if opened.generation < self.known.generation {
            return Answer::Refused(format!(
                "generation {} is older than the applied generation {}",
                opened.generation, self.known.generation
            ));
        }
        match Config::parse(&opened.document) {
            Ok(config) => {
                self.known = Known {
                    generation: opened.generation,
                    digest: Some(digest),
                };
                Answer::Applied(config, opened.generation)
            }
            // A `ConfigError` names fields and receivers, never a secret value.
            Err(error) => Answer::Refused(format!(
                "generation {} does not compile: {error}",
                opened.generation
            )),
        }
    }

    /// Waits before the next call, twice as long as the last time (up to [`MAX_RETRY_SECS`]).
    fn back_off(&mut self, now: u64, answer: &Answer) {
        self.next_at = now.saturating_add(self.retry_delay);
        self.retry_delay = (self.retry_delay * 2).min(MAX_RETRY_SECS);
        if let Answer::Failed(reason) = answer {
            self.failure = Some(reason.clone());
        }
    }
}

/// Why a call that did not bring a 200 or 202 failed, with what to check.
fn failure(status: Option<u16>) -> String {
    match status {
        None => "no answer (connection refused or reset)".into(),
        Some(401) => format!(
            "the controller refused the request (401): its key is not the first of controllerKeys, \
             or the clocks are more than {TOLERANCE_SECS} s apart"
        ),
        Some(503) => {
            "the controller is not ready (503): no endpoint, or no complete compile yet".into()
        }
        Some(504) => "no answer in time (504)".into(),
        Some(status) => format!("the controller answered {status}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::Rejection;
    use hookgate_protocol::channel::{seal, NONCE_HEADER};
    use hookgate_protocol::enrollment::ControllerKey;
    use serde_json::json;

    /// The controller's private keys (the test plays the controller's side with them).
    const CONTROLLER: &str = "4f1b0e3c2a5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7";
    const NEXT_CONTROLLER: &str =
        "8899aabbccddeeff00112233445566778899aabbccddeeff0011223344556677";
    const OTHER_CONTROLLER: &str =
        "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    /// The random bytes this VM's key is drawn from, and another VM's (another worker, or another
    /// extension that drew a key of its own).
    const VM_RANDOM: [u8; 32] = [7; 32];
    const OTHER_VM_RANDOM: [u8; 32] = [9; 32];
    /// Public keys of low order: no session with them is secret.
    const ZERO_KEY: &str = "0000000000000000000000000000000000000000000000000000000000000000";
    const ORDER_4_KEY: &str = "0100000000000000000000000000000000000000000000000000000000000000";
    const ATTESTATION_KEY: &str = "attestation-key-0123456789";
    const RECEIVER_SECRET: &str = "receiver-secret-distinctive";
    const START: u64 = 1_800_000_000;
    const PROXY: &str = "envoy-default-hookgate-5d8f";
    const ANOTHER_NONCE: &str = "ffeeddccbbaa99887766554433221100";

    fn controller(private: &str) -> ControllerKey {
        ControllerKey::from_hex(private.as_bytes()).unwrap()
    }

    /// The public key (hex) of the controller key `private`: what the bootstrap holds.
    fn public(private: &str) -> String {
        controller(private).public().hex()
    }

    fn vm(random: [u8; 32]) -> Public {
        VmKey::new(random).public()
    }

    fn bootstrap_with(keys: &[&str]) -> Bootstrap {
        let keys: Vec<String> = keys.iter().map(|k| public(k)).collect();
        Bootstrap::read(&json!({"controller": {"cluster": "c"}, "controllerKeys": keys})).unwrap()
    }

    fn bootstrap() -> Bootstrap {
        bootstrap_with(&[CONTROLLER])
    }

    fn source_with(keys: &[&str]) -> ConfigSource {
        ConfigSource::new(bootstrap_with(keys), VM_RANDOM, START).unwrap()
    }

    /// The controller key `private`'s session with the VM drawn from `random`.
    fn session(private: &str, random: [u8; 32]) -> ChannelKey {
        controller(private).session(&vm(random)).unwrap()
    }

    /// A delivered document with one receiver per name, its secret and the attestation key inline.
    fn document(names: &[&str]) -> Vec<u8> {
        let receivers: Vec<Value> = names
            .iter()
            .map(|name| {
                json!({"name": name, "namespace": "tenant", "type": "github",
                       "secrets": [{"inline": RECEIVER_SECRET}],
                       "targets": [{"kind": "GitRepository", "name": name}]})
            })
            .collect();
        serde_json::to_vec(&json!({"attestationKey": ATTESTATION_KEY, "receivers": receivers}))
            .unwrap()
    }

    /// `document` sealed by the controller for this VM, answering the request whose nonce is `nonce`.
    fn sealed(generation: u64, nonce: &str, document: &[u8]) -> Vec<u8> {
        seal(
            &session(CONTROLLER, VM_RANDOM),
            generation,
            nonce,
            document,
            [7; 24],
        )
    }

    /// The body the controller `private` posts to confirm the VM drawn from `random`.
    fn confirmation_body(private: &str, random: [u8; 32]) -> String {
        controller(private)
            .confirmation_body(&vm(random), [3; 24])
            .unwrap()
    }

    /// The envelope of a confirmation body.
    fn envelope_of(body: &str) -> Vec<u8> {
        enrollment::read_confirmation_body(body.as_bytes())
            .unwrap()
            .1
    }

    /// The value of header `name` in `headers`.
    fn header<'a>(headers: &'a [(&'static str, String)], name: &str) -> Option<&'a str> {
        headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The controller's answer to the request whose nonce is the argument.
    type Reply = fn(&str) -> (Option<u16>, Vec<u8>);

    /// One VM polling, with a clock.
    struct Run {
        source: ConfigSource,
        now: u64,
        calls: u32,
    }

    impl Run {
        fn new() -> Self {
            Self {
                source: source_with(&[CONTROLLER]),
                now: START,
                calls: 0,
            }
        }

        /// Makes the call due now; the nonce it carries.
        fn send(&mut self) -> String {
            self.calls += 1;
            let nonce = format!("{:032x}", self.calls);
            let headers = self.source.request(self.now, nonce.clone(), PROXY);
            let headers = headers.expect("a call is due");
            let carried = headers.iter().find(|(name, _)| *name == NONCE_HEADER);
            assert_eq!(carried.map(|(_, v)| v.as_str()), Some(nonce.as_str()));
            nonce
        }

        fn exchange(&mut self, reply: Reply) -> Answer {
            let nonce = self.send();
            let (status, body) = reply(&nonce);
            self.source.answer(self.now, status, &body)
        }

        /// Seconds from now until the next call is due.
        fn wait(&self) -> u64 {
            (0..=MAX_RETRY_SECS + 1)
                .find(|wait| self.source.due(self.now + wait))
                .unwrap()
        }
    }

    /// What a case's answer must be.
    #[derive(Debug)]
    enum Expect {
        Applied { generation: u64, receivers: usize },
        Unchanged,
        Pending,
        Refused(&'static str),
        Failed(&'static str),
    }

    /// What a VM has when a case's answer comes.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Prior {
        /// Nothing applied, no confirmation.
        Nothing,
        /// Generation 5 (`webapp`) applied, no confirmation (the controller decides whom it serves).
        Applied,
        /// Confirmed, then generation 5 applied.
        Confirmed,
    }

    /// Each case answers one call, 10 s after what `Prior` says. A refused or failed answer keeps what
    /// was applied, waits before the next call and leaves the age growing; a sealed 200 resets the age; a
    /// 202 before the configuration (awaiting confirmation) keeps the age growing and waits 1 s.
    #[test]
    fn answers() {
        let cases: Vec<(&str, Prior, Reply, Expect)> = vec![
            (
                "applied",
                Prior::Nothing,
                |n| (Some(200), sealed(5, n, &document(&["webapp"]))),
                Expect::Applied {
                    generation: 5,
                    receivers: 1,
                },
            ),
            (
                "a newer configuration replaces the applied one",
                Prior::Applied,
                |n| (Some(200), sealed(6, n, &document(&["webapp", "other"]))),
                Expect::Applied {
                    generation: 6,
                    receivers: 2,
                },
            ),
            (
                "unchanged, sealed (an empty document)",
                Prior::Applied,
                |n| (Some(200), sealed(6, n, b"")),
                Expect::Unchanged,
            ),
            (
                "a bare 304, which anyone on the way could send",
                Prior::Applied,
                |_| (Some(304), vec![]),
                Expect::Refused("a 304 proves nothing"),
            ),
            (
                "a generation from far ahead of this clock",
                Prior::Applied,
                |n| (Some(200), sealed(u64::MAX / 2, n, &document(&["webapp"]))),
                Expect::Refused("generation 9223372036854775807 is ahead of this proxy's clock"),
            ),
            (
                "the same content under another generation is unchanged",
                Prior::Applied,
                |n| (Some(200), sealed(9, n, &document(&["webapp"]))),
                Expect::Unchanged,
            ),
            (
                "replayed envelope (sealed for another request)",
                Prior::Applied,
                |_| (Some(200), sealed(6, ANOTHER_NONCE, &document(&["other"]))),
                Expect::Refused("not authentic"),
            ),
            (
                "replayed before the first configuration",
                Prior::Nothing,
                |_| (Some(200), sealed(6, ANOTHER_NONCE, &document(&["other"]))),
                Expect::Refused("not authentic"),
            ),
            (
                "older generation",
                Prior::Applied,
                |n| (Some(200), sealed(4, n, &document(&["other"]))),
                Expect::Refused("generation 4 is older than the applied generation 5"),
            ),
            (
                "tampered",
                Prior::Applied,
                |n| {
                    let mut envelope = sealed(6, n, &document(&["other"]));
                    if let Some(last) = envelope.last_mut() {
                        *last ^= 1;
                    }
                    (Some(200), envelope)
                },
                Expect::Refused("not authentic"),
            ),
            (
                "sealed under a controller key the filter does not hold",
                Prior::Applied,
                |n| {
                    let other = session(OTHER_CONTROLLER, VM_RANDOM);
                    (Some(200), seal(&other, 6, n, &document(&["other"]), [7; 24]))
                },
                Expect::Refused("unknown channel key"),
            ),
            (
                "sealed by the controller for another VM",
                Prior::Applied,
                |n| {
                    let other = session(CONTROLLER, OTHER_VM_RANDOM);
                    (Some(200), seal(&other, 6, n, &document(&["other"]), [7; 24]))
                },
                Expect::Refused("not authentic"),
            ),
            (
                "a confirmation envelope is no configuration",
                Prior::Applied,
                |_| {
                    let body = confirmation_body(CONTROLLER, VM_RANDOM);
                    (Some(200), envelope_of(&body))
                },
                Expect::Refused("not authentic"),
            ),
            (
                "awaiting confirmation (202) before the first configuration",
                Prior::Nothing,
                |_| (Some(202), vec![]),
                Expect::Pending,
            ),
            (
                "awaiting confirmation (202), configured but never confirmed",
                Prior::Applied,
                |_| (Some(202), vec![]),
                Expect::Pending,
            ),
            (
                "a 202 once confirmed and configured: the controller never takes it back",
                Prior::Confirmed,
                |_| (Some(202), vec![]),
                Expect::Failed("asks again for a confirmation (202)"),
            ),
            (
                "a sealed update once confirmed",
                Prior::Confirmed,
                |n| (Some(200), sealed(6, n, &document(&["webapp", "other"]))),
                Expect::Applied {
                    generation: 6,
                    receivers: 2,
                },
            ),
            (
                "not an envelope",
                Prior::Applied,
                |_| (Some(200), document(&["other"])),
                Expect::Refused("malformed configuration envelope"),
            ),
            (
                "a document that does not compile: previous kept",
                Prior::Applied,
                |n| {
                    let document = json!({"attestationKey": "short", "receivers": []});
                    (Some(200), sealed(6, n, document.to_string().as_bytes()))
                },
                Expect::Refused(
                    "generation 6 does not compile: field `attestationKey`: the attestation key is shorter",
                ),
            ),
            (
                "a document naming an environment variable is not read from the proxy's",
                Prior::Applied,
                |n| {
                    let document = String::from_utf8(document(&["webapp"])).unwrap();
                    let document = document.replace(
                        &format!(r#"{{"inline":"{RECEIVER_SECRET}"}}"#),
                        r#"{"env":"HOME"}"#,
                    );
                    (Some(200), sealed(6, n, document.as_bytes()))
                },
                Expect::Refused("field `receivers[0].secrets[0].env`: unknown field `env`"),
            ),
            (
                "controller down (no answer): previous kept",
                Prior::Applied,
                |_| (None, vec![]),
                Expect::Failed("no answer"),
            ),
            (
                "controller not ready",
                Prior::Nothing,
                |_| (Some(503), vec![]),
                Expect::Failed("not ready (503)"),
            ),
            (
                "the controller refuses the request",
                Prior::Applied,
                |_| (Some(401), vec![]),
                Expect::Failed("(401)"),
            ),
            (
                "timeout",
                Prior::Applied,
                |_| (Some(504), vec![]),
                Expect::Failed("in time"),
            ),
        ];
        let mut failures = Vec::new();
        for (case, prior, reply, expect) in cases {
            let mut run = Run::new();
            if prior == Prior::Confirmed {
                let body = confirmation_body(CONTROLLER, VM_RANDOM);
                assert!(run.source.confirmation(&envelope_of(&body)), "{case}");
            }
            if prior != Prior::Nothing {
                let applied = run.exchange(|n| (Some(200), sealed(5, n, &document(&["webapp"]))));
                assert!(
                    matches!(applied, Answer::Applied(_, 5)),
                    "{case}: {applied:?}"
                );
            }
            let before = run.source.known().clone();
            run.now += 10;
            let answer = run.exchange(reply);
            let (known, wait, age) = match (&expect, &answer) {
                (
                    Expect::Applied {
                        generation,
                        receivers,
                    },
                    Answer::Applied(config, applied),
                ) if applied == generation && config.receivers.len() == *receivers => {
                    let digest = run.source.known().digest.clone();
                    (
                        Known {
                            generation: *generation,
                            digest,
                        },
                        MIN_INTERVAL_SECS,
                        0,
                    )
                }
                (Expect::Unchanged, Answer::Unchanged) => (before, MIN_INTERVAL_SECS, 0),
                (Expect::Pending, Answer::Pending) => (before, PENDING_RETRY_SECS, 10),
                (Expect::Refused(reason), Answer::Refused(got))
                | (Expect::Failed(reason), Answer::Failed(got))
                    if got.contains(reason) && !got.contains(RECEIVER_SECRET) =>
                {
                    (before, FIRST_RETRY_SECS, 10)
                }
                _ => {
                    failures.push(format!("{case}: want {expect:?}, got {answer:?}"));
                    continue;
                }
            };
            let got = (
                run.source.known().clone(),
                run.wait(),
                run.source.age(run.now),
            );
            if got != (known.clone(), wait, age) {
                failures.push(format!(
                    "{case}: want (known, wait, age) {:?}, got {got:?}",
                    (known, wait, age)
                ));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    /// A VM serves nothing until a configuration is applied: the glue keeps no filter, and every
    /// delivery is refused with 503 `not_configured`, however the controller answers meanwhile.
    #[test]
    fn before_the_first_configuration_deliveries_are_refused() {
        let mut run = Run::new();
        let replies: [Reply; 4] = [
            |_| (Some(503), vec![]),
            |_| (Some(202), vec![]),
            |_| (Some(200), sealed(6, ANOTHER_NONCE, &document(&["webapp"]))),
            |_| (Some(304), vec![]),
        ];
        for reply in replies {
            let answer = run.exchange(reply);
            assert!(!matches!(answer, Answer::Applied(..)), "{answer:?}");
            assert_eq!(run.source.known(), &Known::default());
            run.now += MAX_RETRY_SECS;
        }
        let rejection = Rejection::NotConfigured;
        assert_eq!(
            (rejection.status(), rejection.metric_key()),
            (503, "not_configured")
        );
    }

    #[test]
    fn failures_back_off_from_1_to_8_seconds_and_a_success_resets() {
        let mut run = Run::new();
        let mut waits = Vec::new();
        for _ in 0..5 {
            run.exchange(|_| (None, vec![]));
            waits.push(run.wait());
            run.now += run.wait();
        }
        assert_eq!(waits, [1, 2, 4, 8, 8]);
        assert_eq!(
            run.source.failing(),
            Some("no answer (connection refused or reset)")
        );
        run.exchange(|n| (Some(200), sealed(5, n, b"")));
        assert_eq!(run.source.failing(), None);
        run.now += 20;
        run.exchange(|_| (Some(503), vec![]));
        assert_eq!(run.wait(), 1);
        assert!(matches!(
            run.source.not_sent(run.now, "BadArgument"),
            Answer::Failed(_)
        ));
        assert_eq!(run.wait(), 2);
    }

    /// While a call is in flight no other is made; an "unchanged" held by the controller is followed by
    /// the next call at once, one answered at once a second later.
    #[test]
    fn one_call_at_a_time_and_no_loop() {
        let mut run = Run::new();
        let held = run.send();
        assert!(run.source.request(run.now, "1".repeat(32), PROXY).is_none());
        run.now += LONG_POLL_SECS;
        assert!(!run.source.due(run.now));
        assert!(matches!(
            run.source
                .answer(run.now, Some(200), &sealed(5, &held, b"")),
            Answer::Unchanged
        ));
        assert!(run.source.due(run.now), "the long poll goes on at once");
        assert!(matches!(
            run.exchange(|n| (Some(200), sealed(5, n, b""))),
            Answer::Unchanged
        ));
        assert_eq!(
            run.wait(),
            MIN_INTERVAL_SECS,
            "an immediate answer does not loop"
        );
    }

    /// A call the host never answers is replaced after its timeout; an answer to it then no longer
    /// opens.
    #[test]
    fn a_lost_call_is_replaced() {
        let mut run = Run::new();
        let lost = run.send();
        let timeout = DEFAULT_TIMEOUT_MS / 1000;
        run.now += timeout;
        assert!(!run.source.due(run.now));
        run.now += LOST_AFTER_TIMEOUT_SECS;
        assert!(run.source.due(run.now));
        run.send();
        let late = sealed(5, &lost, &document(&["webapp"]));
        let answer = run.source.answer(run.now, Some(200), &late);
        assert!(matches!(answer, Answer::Refused(_)), "{answer:?}");
        assert!(matches!(
            run.source.answer(run.now, Some(304), b""),
            Answer::Refused(_)
        ));
    }

    #[test]
    fn the_age_counts_from_the_last_answer_that_opened() {
        let mut run = Run::new();
        run.now += 3;
        assert_eq!(
            run.source.age(run.now),
            3,
            "since the start before any answer"
        );
        run.exchange(|n| (Some(200), sealed(5, n, &document(&["webapp"]))));
        assert_eq!(run.source.age(run.now), 0);
        run.now += 30;
        run.exchange(|_| (Some(503), vec![]));
        assert_eq!(run.source.age(run.now), 30);
        run.now += 1;
        run.exchange(|n| (Some(200), sealed(5, n, b"")));
        assert_eq!(run.source.age(run.now + 2), 2);
    }

    /// The request is the protocol's, signed under the session with the first controller key, naming the
    /// configuration applied; it carries this VM's key and, once one opened, its confirmation.
    #[test]
    fn a_request_is_signed_and_carries_the_vm_key_then_the_confirmation() {
        let mut run = Run::new();
        run.exchange(|n| (Some(200), sealed(5, n, &document(&["webapp"]))));
        run.now += 1;
        let nonce = "00112233445566778899aabbccddeeff".to_string();
        let headers = run.source.request(run.now, nonce.clone(), PROXY).unwrap();
        let get = |name: &str| header(&headers, name);
        assert_eq!(get(":method"), Some("GET"));
        assert_eq!(get(":path"), Some(CONFIGURATION_PATH));
        assert_eq!(get(":authority"), Some(DEFAULT_AUTHORITY));
        assert_eq!(get(VM_KEY_HEADER), Some(vm(VM_RANDOM).hex().as_str()));
        assert_eq!(run.source.vm_key(), vm(VM_RANDOM));
        assert_eq!(get(CONFIRMATION_HEADER), None, "not confirmed yet");
        // The controller derives the session from the VM key the request names.
        let presented = Public::from_hex(get(VM_KEY_HEADER).unwrap().as_bytes()).unwrap();
        let theirs = controller(CONTROLLER).session(&presented).unwrap();
        let other = session(OTHER_CONTROLLER, VM_RANDOM);
        let verified = ConfigRequest::verify(get, &[other, theirs], run.now).unwrap();
        assert_eq!(verified.key_index, 1);
        assert_eq!(verified.request.nonce, nonce);
        assert_eq!(verified.request.proxy, PROXY);
        assert_eq!(&verified.request.known, run.source.known());
        assert_eq!(verified.request.known.generation, 5);
        // Another VM's session (another extension's key) does not verify it.
        let probe = session(CONTROLLER, OTHER_VM_RANDOM);
        assert!(ConfigRequest::verify(get, &[probe], run.now).is_err());

        let answer = run
            .source
            .answer(run.now, Some(200), &sealed(5, &nonce, b""));
        assert!(matches!(answer, Answer::Unchanged), "{answer:?}");
        let body = confirmation_body(CONTROLLER, VM_RANDOM);
        assert!(run.source.confirmation(&envelope_of(&body)));
        run.now += 1;
        let headers = run.source.request(run.now, nonce, PROXY).unwrap();
        let expected = controller(CONTROLLER).confirmation(&vm(VM_RANDOM));
        assert_eq!(
            header(&headers, CONFIRMATION_HEADER),
            Some(expected.as_str())
        );
        assert!(controller(CONTROLLER).confirms(&vm(VM_RANDOM), &expected));
    }

    /// During a rotation the requests are signed with the first key's session, and an answer opens
    /// under whichever key's session it names.
    #[test]
    fn an_answer_opens_under_either_key() {
        let mut source = source_with(&[CONTROLLER, NEXT_CONTROLLER]);
        let nonce = "00112233445566778899aabbccddeeff";
        let headers = source.request(START, nonce.into(), PROXY).unwrap();
        let first = controller(CONTROLLER).public().id_hex();
        assert_eq!(
            header(&headers, channel::KEY_ID_HEADER),
            Some(first.as_str())
        );
        let envelope = seal(
            &session(NEXT_CONTROLLER, VM_RANDOM),
            3,
            nonce,
            &document(&["webapp"]),
            [1; 24],
        );
        let answer = source.answer(START, Some(200), &envelope);
        assert!(matches!(answer, Answer::Applied(_, 3)), "{answer:?}");
    }

    #[test]
    fn proxy_names_are_made_valid() {
        let long = "a".repeat(300);
        for (case, node_id, expected) in [
            (
                "kept",
                Some("envoy-gw/10.0.0.7:80".as_bytes()),
                "envoy-gw/10.0.0.7:80",
            ),
            ("none", None, "unknown"),
            ("empty", Some(b"".as_slice()), "unknown"),
            ("newline and space", Some(b"a\nb c".as_slice()), "a-b-c"),
            ("not UTF-8", Some(b"x\xffy".as_slice()), "x-y"),
            ("too long", Some(long.as_bytes()), &long[..MAX_PROXY_LEN]),
        ] {
            let name = proxy_name(node_id);
            assert_eq!(name, expected, "{case}");
            assert!(channel::valid_proxy(&name), "{case}");
        }
    }

    #[test]
    fn a_bootstrap_that_is_not_json_is_refused_without_its_content() {
        let key = public(CONTROLLER);
        let err =
            Bootstrap::parse(format!(r#"{{"controllerKeys":["{key}"#).as_bytes()).unwrap_err();
        assert_eq!(err.field, "(document)");
        assert!(!err.to_string().contains(&key), "{err}");
    }

    #[test]
    fn a_bootstrap_takes_defaults() {
        let bootstrap = bootstrap();
        assert_eq!(bootstrap.cluster, "c");
        assert_eq!(bootstrap.authority, DEFAULT_AUTHORITY);
        assert_eq!(bootstrap.timeout, Duration::from_secs(25));
        assert_eq!(bootstrap.keys, [controller(CONTROLLER).public()]);
        let shown = format!("{bootstrap:?}");
        assert!(!shown.contains(CONTROLLER), "{shown}");
        assert!(
            shown.contains(&controller(CONTROLLER).public().id_hex()),
            "{shown}"
        );
        let full = json!({"controller": {"cluster": "httproute/flux-system/hookgate-webhooks/rule/0",
                                          "authority": "controller.hookgate:8080", "timeoutMs": 30000},
                          "controllerKeys": [public(CONTROLLER), public(NEXT_CONTROLLER).to_uppercase()]});
        let full = Bootstrap::read(&full).unwrap();
        assert_eq!(full.authority, "controller.hookgate:8080");
        assert_eq!(full.timeout, Duration::from_secs(30));
        assert_eq!(full.keys[1], controller(NEXT_CONTROLLER).public());
    }

    /// Each error names its field and never shows a key: not the public key, nor the controller's
    /// private key pasted in its place, nor anything else given there.
    #[test]
    fn bootstrap_errors_name_the_field_and_never_show_a_key() {
        let key = public(CONTROLLER);
        let next = public(NEXT_CONTROLLER);
        let other = public(OTHER_CONTROLLER);
        let cases: Vec<(&str, Value, &str, &str)> = vec![
            (
                "no cluster",
                json!({"controller": {}, "controllerKeys": [key]}),
                "controller.cluster",
                "is required",
            ),
            (
                "empty cluster",
                json!({"controller": {"cluster": ""}, "controllerKeys": [key]}),
                "controller.cluster",
                "must name the Envoy cluster",
            ),
            (
                "controller not an object",
                json!({"controller": null, "controllerKeys": [key]}),
                "controller",
                "must be a JSON object, not null",
            ),
            (
                "unknown field",
                json!({"controller": {"cluster": "c"}, "controllerKeys": [key], "receivers": []}),
                "receivers",
                "unknown field",
            ),
            (
                "a receivers document, as before receivers were objects",
                json!({"receivers": [{"name": "a", "namespace": "b", "type": "github",
                                      "secrets": [{"inline": key}]}],
                       "attestationKeyEnv": "HOOKGATE_ATTESTATION_KEY"}),
                "receivers",
                "they are `Receiver` objects",
            ),
            ("an empty document", json!({}), "controller", "is required"),
            (
                "the old channel keys, a secret, refused",
                json!({"controller": {"cluster": "c"}, "controllerKeys": [key],
                       "channelKeys": ["channel-key-0123456789abcdef0123456789"]}),
                "channelKeys",
                "unknown field",
            ),
            (
                "the old channel keys alone",
                json!({"controller": {"cluster": "c"},
                       "channelKeys": ["channel-key-0123456789abcdef0123456789"]}),
                "channelKeys",
                "unknown field",
            ),
            (
                "unknown controller field",
                json!({"controller": {"cluster": "c", "port": 1}, "controllerKeys": [key]}),
                "controller.port",
                "unknown field",
            ),
            (
                "authority with a space",
                json!({"controller": {"cluster": "c", "authority": "a b"}, "controllerKeys": [key]}),
                "controller.authority",
                "must be a host name",
            ),
            (
                "timeout shorter than the long poll",
                json!({"controller": {"cluster": "c", "timeoutMs": 20000}, "controllerKeys": [key]}),
                "controller.timeoutMs",
                "must be from 21000 to 300000",
            ),
            (
                "no keys field",
                json!({"controller": {"cluster": "c"}}),
                "controllerKeys",
                "is required",
            ),
            (
                "no keys",
                json!({"controller": {"cluster": "c"}, "controllerKeys": []}),
                "controllerKeys",
                "must hold the controller's public key",
            ),
            (
                "three keys",
                json!({"controller": {"cluster": "c"}, "controllerKeys": [key, next, other]}),
                "controllerKeys",
                "or two while it changes",
            ),
            (
                "a key alone, not in a list",
                json!({"controller": {"cluster": "c"}, "controllerKeys": key}),
                "controllerKeys",
                "must be a list of strings, not a string",
            ),
            (
                "a key that is not a string",
                json!({"controller": {"cluster": "c"}, "controllerKeys": [1234567890123456789u64]}),
                "controllerKeys[0]",
                "must be a string, not a number",
            ),
            (
                "short key",
                json!({"controller": {"cluster": "c"}, "controllerKeys": [key, "0123abcd"]}),
                "controllerKeys[1]",
                "64 hex characters (32 bytes), not 8 characters",
            ),
            (
                "key with a newline",
                json!({"controller": {"cluster": "c"}, "controllerKeys": [format!("{key}\n")]}),
                "controllerKeys[0]",
                "not 65 characters",
            ),
            (
                "key not hex",
                json!({"controller": {"cluster": "c"}, "controllerKeys": ["zz".repeat(32)]}),
                "controllerKeys[0]",
                "not hexadecimal",
            ),
            (
                "an old channel key in place of the public key",
                json!({"controller": {"cluster": "c"},
                       "controllerKeys": ["channel-key-0123456789abcdef0123456789"]}),
                "controllerKeys[0]",
                "not 38 characters",
            ),
            (
                "a key of low order (zero)",
                json!({"controller": {"cluster": "c"}, "controllerKeys": [key, ZERO_KEY]}),
                "controllerKeys[1]",
                "not a usable public key",
            ),
            (
                "a key of low order (order 4)",
                json!({"controller": {"cluster": "c"}, "controllerKeys": [ORDER_4_KEY]}),
                "controllerKeys[0]",
                "not a usable public key",
            ),
            (
                "the same key twice",
                json!({"controller": {"cluster": "c"}, "controllerKeys": [key, key]}),
                "controllerKeys[1]",
                "is the same key as controllerKeys[0]",
            ),
            (
                "the same key twice, in other case",
                json!({"controller": {"cluster": "c"}, "controllerKeys": [key, key.to_uppercase()]}),
                "controllerKeys[1]",
                "is the same key as controllerKeys[0]",
            ),
        ];
        let mut failures = Vec::new();
        for (case, raw, field, reason) in cases {
            match Bootstrap::read(&raw) {
                Ok(_) => failures.push(format!("{case}: read")),
                Err(err) => {
                    let shown = format!("{err} {err:?}");
                    if err.field != field || !err.reason.contains(reason) {
                        failures.push(format!("{case}: want `{field}`: {reason}, got {err}"));
                    }
                    for secret in [
                        key.as_str(),
                        &key[..16],
                        &key.to_uppercase()[..16],
                        "0123abcd",
                        "channel-key-",
                        "1234567890123456789",
                        "zzzz",
                    ] {
                        if shown.contains(secret) {
                            failures.push(format!("{case}: shows a key: {shown}"));
                        }
                    }
                }
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    /// A key without a session never gets to a VM: refused when the polling is created too.
    #[test]
    fn a_controller_key_of_low_order_gives_no_source() {
        for (case, keys, field) in [
            (
                "zero, second",
                vec![
                    controller(CONTROLLER).public(),
                    Public::from_hex(ZERO_KEY.as_bytes()).unwrap(),
                ],
                "controllerKeys[1]",
            ),
            (
                "order 4",
                vec![Public::from_hex(ORDER_4_KEY.as_bytes()).unwrap()],
                "controllerKeys[0]",
            ),
            ("none", vec![], "controllerKeys"),
        ] {
            let bootstrap = Bootstrap {
                keys,
                ..bootstrap()
            };
            match ConfigSource::new(bootstrap, VM_RANDOM, START) {
                Ok(_) => panic!("{case}: created"),
                Err(err) => assert_eq!(err.field, field, "{case}: {err}"),
            }
        }
    }

    /// A confirmation opens only under this VM's sessions: one for another VM, or sealed by a controller
    /// key the bootstrap does not hold, or altered, or a configuration envelope, is refused and changes
    /// nothing.
    #[test]
    fn a_confirmation_opens_only_for_this_vm() {
        let ours = envelope_of(&confirmation_body(CONTROLLER, VM_RANDOM));
        let mut altered = ours.clone();
        if let Some(last) = altered.last_mut() {
            *last ^= 1;
        }
        let configuration = sealed(0, "confirmation", b"0123456789abcdef0123456789abcdef");
        let not_hex = seal(
            &session(CONTROLLER, VM_RANDOM),
            0,
            "confirmation",
            b"not\na header",
            [3; 24],
        );
        let cases: Vec<(&str, Vec<u8>, bool)> = vec![
            ("for this VM", ours.clone(), true),
            (
                "from the second controller key",
                envelope_of(&confirmation_body(NEXT_CONTROLLER, VM_RANDOM)),
                true,
            ),
            (
                "for another VM",
                envelope_of(&confirmation_body(CONTROLLER, OTHER_VM_RANDOM)),
                false,
            ),
            (
                "sealed by a controller key not in the bootstrap",
                envelope_of(&confirmation_body(OTHER_CONTROLLER, VM_RANDOM)),
                false,
            ),
            ("altered", altered, false),
            (
                "sealed as a configuration",
                sealed(0, ANOTHER_NONCE, b"x"),
                false,
            ),
            ("empty", vec![], false),
            ("garbage", b"HGC1 and more".to_vec(), false),
            // Opens (the controller's nonce "confirmation" is known): only a header-safe value is kept.
            ("a value that is not hex", not_hex, false),
            (
                "a value of hex, as the controller makes",
                configuration,
                true,
            ),
        ];
        let mut failures = Vec::new();
        for (case, envelope, opens) in cases {
            let mut source = source_with(&[CONTROLLER, NEXT_CONTROLLER]);
            if source.confirmation(&envelope) != opens || source.confirmed() != opens {
                failures.push(format!("{case}: want opened {opens}"));
            }
            // A refused one never replaces one that opened.
            if !opens {
                assert!(source.confirmation(&ours), "{case}");
                assert!(!source.confirmation(&envelope), "{case}");
                let headers = source.request(START, ANOTHER_NONCE.into(), PROXY).unwrap();
                let expected = controller(CONTROLLER).confirmation(&vm(VM_RANDOM));
                if header(&headers, CONFIRMATION_HEADER) != Some(expected.as_str()) {
                    failures.push(format!("{case}: replaced the confirmation"));
                }
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    /// The slot is named by the VM's whole key; a slot value counts only when its key part is this
    /// VM's (a value written under another name never is).
    #[test]
    fn a_slot_value_counts_only_for_its_vm() {
        let source = source_with(&[CONTROLLER]);
        let key = vm(VM_RANDOM).hex();
        assert_eq!(source.slot(), format!("hookgate.confirmation.{key}"));
        assert_eq!(source.slot(), confirmation_slot(&source.vm_key()));
        let ours = confirmation_body(CONTROLLER, VM_RANDOM);
        let (ours_key, ours_envelope) = ours.split_once('.').unwrap();
        // Another VM whose key differs in its last hex.
        let last = if key.ends_with('0') { "1" } else { "0" };
        let sharing = Public::from_hex(format!("{}{last}", &key[..63]).as_bytes()).unwrap();
        assert_ne!(confirmation_slot(&sharing), source.slot());
        let cases: Vec<(&str, String, bool)> = vec![
            ("ours", ours.clone(), true),
            (
                "another VM's key, with our envelope",
                format!("{}.{ours_envelope}", sharing.hex()),
                false,
            ),
            (
                "ours, key in upper case",
                format!("{}.{ours_envelope}", ours_key.to_uppercase()),
                true,
            ),
            (
                "another VM's",
                confirmation_body(CONTROLLER, OTHER_VM_RANDOM),
                false,
            ),
            ("our key, envelope not hex", format!("{ours_key}.zz"), false),
            ("our key alone", ours_key.to_string(), false),
            (
                "our key cut",
                format!("{}.{ours_envelope}", &ours_key[..62]),
                false,
            ),
            ("empty", String::new(), false),
            (
                "over the limit",
                format!("{ours}{}", "0".repeat(MAX_CONFIRMATION_BODY)),
                false,
            ),
        ];
        let mut failures = Vec::new();
        for (case, value, counts) in cases {
            let got = source.envelope_in_slot(value.as_bytes());
            let want = counts.then(|| hex::decode(ours_envelope).unwrap());
            if got != want {
                failures.push(format!("{case}: want counted {counts}"));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    /// What the filter answers a post to the confirmation path, and where it stores the body.
    #[test]
    fn posted_confirmations() {
        let ours = confirmation_body(CONTROLLER, VM_RANDOM);
        let slot = confirmation_slot(&vm(VM_RANDOM));
        let key = vm(VM_RANDOM).hex();
        let rejected = r#"{"status":"rejected","reason":"not a confirmation"}"#;
        /// A named case: the body posted, the slot it is stored in or the status and body answered.
        type PostCase = (&'static str, String, Result<String, (u32, &'static str)>);
        let cases: Vec<PostCase> = vec![
            ("a confirmation", ours.clone(), Ok(slot.clone())),
            (
                "a confirmation for any key, with any envelope",
                format!("{}.00", key.to_uppercase()),
                Ok(slot),
            ),
            (
                "empty",
                String::new(),
                Err((400, r#"{"status":"rejected","reason":"empty body"}"#)),
            ),
            (
                "over the limit",
                "a".repeat(MAX_CONFIRMATION_BODY + 1),
                Err((413, r#"{"status":"rejected","reason":"payload too large"}"#)),
            ),
            ("no dot", key.clone(), Err((400, rejected))),
            ("short key", "abcd.00".into(), Err((400, rejected))),
            (
                "envelope not hex",
                format!("{key}.zz"),
                Err((400, rejected)),
            ),
            (
                "a delivery",
                r#"{"ref":"refs/heads/main"}"#.into(),
                Err((400, rejected)),
            ),
        ];
        let mut failures = Vec::new();
        for (case, body, want) in cases {
            let got =
                posted_confirmation(body.as_bytes()).map_err(|reply| (reply.status, reply.body));
            let want = want.map_err(|(status, body)| (status, body.to_string()));
            if got != want {
                failures.push(format!("{case}: want {want:?}, got {got:?}"));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
        let stored = confirmation_stored();
        assert_eq!(
            (stored.status, stored.body.as_str()),
            (202, r#"{"status":"accepted"}"#)
        );
        // One slot per key, kept only where that key is registered: the same key's registration.
        for b in 0u8..=255 {
            let key = Public::from_hex(hex::encode([b; 32]).as_bytes()).unwrap();
            let slot = confirmation_slot(&key);
            let suffix = slot.strip_prefix(CONFIRMATION_SLOT_PREFIX).unwrap();
            assert_eq!(suffix, key.hex(), "{slot}");
            assert_eq!(registration_for_slot(&slot), registration(&key));
        }
    }

    #[test]
    fn which_requests_are_confirmations() {
        let cases = [
            ("POST", CONFIRMATION_PATH, true),
            ("POST", "/hook/.well-known/hookgate/confirmation?x=1", true),
            ("POST", "/hook/.well-known/hookgate/confirmation#x", true),
            ("GET", CONFIRMATION_PATH, false),
            ("post", CONFIRMATION_PATH, false),
            ("POST", "/hook/.well-known/hookgate/confirmation/", false),
            ("POST", "/hook/.well-known/hookgate/confirmationx", false),
            ("POST", "/hook/.well-known/hookgate", false),
            ("POST", "/hook/0123abcd", false),
            ("POST", "", false),
        ];
        for (method, path, expected) in cases {
            assert_eq!(
                is_confirmation_post(method, path),
                expected,
                "{method} {path}"
            );
        }
    }

    /// While the controller waits for this VM's confirmation each 202 is followed by a call 1 s later,
    /// the wait never grows and the age does; failures in between back off as usual.
    #[test]
    fn awaiting_confirmation_polls_every_second() {
        let mut run = Run::new();
        assert!(run.source.wants_confirmation());
        assert!(!run.source.awaiting());
        for _ in 0..5 {
            let answer = run.exchange(|_| (Some(202), vec![]));
            assert!(matches!(answer, Answer::Pending), "{answer:?}");
            assert_eq!(run.wait(), PENDING_RETRY_SECS);
            assert!(run.source.awaiting());
            run.now += run.wait();
        }
        assert_eq!(run.source.age(run.now), 5);
        assert_eq!(run.source.failing(), None);
        run.exchange(|_| (Some(503), vec![]));
        run.now += run.wait();
        run.exchange(|_| (Some(503), vec![]));
        assert_eq!(run.wait(), 2, "failures back off");
        assert!(run.source.failing().is_some());
        run.now += run.wait();
        assert!(matches!(
            run.exchange(|_| (Some(202), vec![])),
            Answer::Pending
        ));
        assert_eq!(run.wait(), PENDING_RETRY_SECS);
        assert_eq!(run.source.failing(), None, "the controller answers");
        assert!(run.source.awaiting(), "still awaiting after failures");
    }

    /// The whole enrollment: the controller answers 202; it posts a confirmation, which the VM opens
    /// from its slot; the next request carries the confirmation, which the controller checks, and it
    /// serves the configuration, applied.
    #[test]
    fn a_vm_is_confirmed_then_configured() {
        let controller = controller(CONTROLLER);
        let mut run = Run::new();
        // The controller's side: the VM key the request names, the 202, and the body it posts.
        let headers = run
            .source
            .request(run.now, ANOTHER_NONCE.into(), PROXY)
            .unwrap();
        assert_eq!(header(&headers, CONFIRMATION_HEADER), None);
        let presented = header(&headers, VM_KEY_HEADER).unwrap();
        let presented = Public::from_hex(presented.as_bytes()).unwrap();
        let session = controller.session(&presented).unwrap();
        assert!(ConfigRequest::verify(|n| header(&headers, n), &[session], run.now).is_ok());
        let body = controller.confirmation_body(&presented, [5; 24]).unwrap();
        assert!(matches!(
            run.source.answer(run.now, Some(202), b""),
            Answer::Pending
        ));
        // The filter's side: the post is stored in the slot of the key it names; the VM reads its slot.
        assert_eq!(posted_confirmation(body.as_bytes()), Ok(run.source.slot()));
        assert!(run.source.wants_confirmation());
        let envelope = run.source.envelope_in_slot(body.as_bytes()).unwrap();
        assert!(run.source.confirmation(&envelope));
        assert!(run.source.confirmed());
        assert!(
            run.source.wants_confirmation(),
            "until the controller takes it"
        );

        run.now += PENDING_RETRY_SECS;
        let nonce = format!("{:032x}", 99);
        let headers = run.source.request(run.now, nonce.clone(), PROXY).unwrap();
        let get = |name: &str| header(&headers, name);
        let presented = Public::from_hex(get(VM_KEY_HEADER).unwrap().as_bytes()).unwrap();
        assert!(controller.confirms(&presented, get(CONFIRMATION_HEADER).unwrap()));
        let session = controller.session(&presented).unwrap();
        assert!(ConfigRequest::verify(get, std::slice::from_ref(&session), run.now).is_ok());
        let envelope = seal(&session, 7, &nonce, &document(&["webapp"]), [8; 24]);
        let answer = run.source.answer(run.now, Some(200), &envelope);
        assert!(matches!(answer, Answer::Applied(_, 7)), "{answer:?}");
        assert_eq!(run.source.age(run.now), 0);
        assert!(!run.source.awaiting());
        assert!(!run.source.wants_confirmation());
        assert_eq!(run.wait(), MIN_INTERVAL_SECS);
    }
}
