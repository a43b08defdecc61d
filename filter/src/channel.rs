//! The filter's side of the configuration channel (docs/live-configuration.md): the bootstrap that says how
//! to reach the controller, and [`ConfigSource`], which decides when to ask for the configuration and what
//! to make of each answer. The wire contract (signed request, sealed answer) is
//! [`hookgate_protocol::channel`]; the proxy-wasm glue only sends what [`ConfigSource::request`] builds and
//! hands back what came.

use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use crate::config::wire::{self, Object, SecretList, SecretText};
use crate::config::{Config, ConfigError};
use hookgate_protocol::attestation::{KeyError, MIN_KEY_LEN};
use hookgate_protocol::channel::{
    self, ChannelKey, ConfigRequest, Known, CONFIGURATION_PATH, LONG_POLL_SECS, MAX_PROXY_LEN,
    TOLERANCE_SECS,
};

/// The `:authority` of the requests when the bootstrap names none: the controller's Service.
pub const DEFAULT_AUTHORITY: &str = "hookgate-controller";
/// The controller holds a request up to [`LONG_POLL_SECS`]: the call waits that long and a little more.
pub const DEFAULT_TIMEOUT_MS: u64 = LONG_POLL_SECS * 1000 + 5000;
/// A timeout shorter than the long poll would end every call of an up-to-date proxy in a failure.
pub const MIN_TIMEOUT_MS: u64 = LONG_POLL_SECS * 1000 + 1000;
pub const MAX_TIMEOUT_MS: u64 = 300_000;
/// One key, and a second while the key changes.
pub const MAX_CHANNEL_KEYS: usize = 2;
/// The wait after the first failed call; it doubles with each failure after it, up to [`MAX_RETRY_SECS`].
pub const FIRST_RETRY_SECS: u64 = 1;
pub const MAX_RETRY_SECS: u64 = 8;
/// The least time between two calls, even when the controller answers at once: a controller that does
/// not hold its answers must not make every worker of every proxy call it in a loop.
pub const MIN_INTERVAL_SECS: u64 = 1;
/// How long after its timeout a call without any answer counts as lost (the host always answers, a
/// timeout included: this only keeps polling from stopping for good if it ever does not).
const LOST_AFTER_TIMEOUT_SECS: u64 = 5;

/// Counts the answers refused ([`Answer::Refused`]).
pub const REFUSED_METRIC: &str = "hookgate_configuration_refused_total";
/// Seconds since the controller last answered 200 or 304 (since the start, before it ever did).
pub const AGE_METRIC: &str = "hookgate_configuration_age_seconds";
/// Milliseconds the last configuration applied took this VM to open and compile.
pub const LOAD_METRIC: &str = "hookgate_configuration_load_milliseconds";
/// Receivers in the configuration this VM serves.
pub const RECEIVERS_METRIC: &str = "hookgate_configuration_receivers";

/// The plugin configuration in live mode: how to reach the controller, and the channel keys. `Debug`
/// shows the keys' ids only.
#[derive(Debug)]
pub struct Bootstrap {
    /// The Envoy cluster that reaches the controller (the webhook route's own).
    pub cluster: String,
    pub authority: String,
    pub timeout: Duration,
    /// The first signs the requests; an answer opens under whichever of them it names.
    pub keys: Vec<ChannelKey>,
}

/// The bootstrap as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct WireBootstrap {
    controller: Object<WireController>,
    channel_keys: SecretList,
}

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
        let WireBootstrap {
            controller: Object(controller),
            channel_keys: SecretList(materials),
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
            keys: channel_keys(materials)?,
        })
    }
}

/// The channel keys, each checked by the rule the controller applies to its own.
fn channel_keys(materials: Vec<SecretText>) -> Result<Vec<ChannelKey>, ConfigError> {
    if materials.is_empty() || materials.len() > MAX_CHANNEL_KEYS {
        return Err(error(
            "channelKeys",
            "must hold one key (the controller's Secret hookgate-channel), or two while it changes",
        ));
    }
    let mut keys: Vec<ChannelKey> = Vec::with_capacity(materials.len());
    for (index, SecretText(material)) in materials.into_iter().enumerate() {
        let field = format!("channelKeys[{index}]");
        let key = ChannelKey::new(material.expose()).map_err(|e| error(&field, key_reason(e)))?;
        if keys.iter().any(|k| k.id_hex() == key.id_hex()) {
            return Err(error(&field, "is the same key as channelKeys[0]"));
        }
        keys.push(key);
    }
    Ok(keys)
}

/// Why a channel key is refused, in the words the controller uses for its own.
fn key_reason(error: KeyError) -> String {
    match error {
        KeyError::TooShort => format!(
            "the channel key is shorter than {MIN_KEY_LEN} bytes: generate one with `hookgate token`"
        ),
        KeyError::SurroundingWhitespace => "the channel key begins or ends with whitespace; the \
            controller reads its key byte for byte, so it is refused"
            .to_string(),
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

/// What an answer of the controller comes to.
#[derive(Debug)]
pub enum Answer {
    /// A new configuration to serve from now on, and its generation.
    Applied(Config, u64),
    /// Nothing newer: the configuration served stays.
    Unchanged,
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

/// The state of one VM's polling: what it serves, the call in flight, when it last heard from the
/// controller, and how long to wait after a failure. Times are unix seconds.
pub struct ConfigSource {
    bootstrap: Bootstrap,
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
    pub fn new(bootstrap: Bootstrap, now: u64) -> Self {
        Self {
            bootstrap,
            known: Known::default(),
            in_flight: None,
            started: now,
            last_contact: None,
            next_at: now,
            retry_delay: FIRST_RETRY_SECS,
            failure: None,
        }
    }

    pub fn bootstrap(&self) -> &Bootstrap {
        &self.bootstrap
    }

    /// The configuration applied (`0.-` before the first).
    pub fn known(&self) -> &Known {
        &self.known
    }

    /// The reason of the last failure, while the calls fail (reset by a 200 or 304).
    pub fn failing(&self) -> Option<&str> {
        self.failure.as_deref()
    }

    /// Seconds since the controller last answered 200 or 304, or since the start if it never did.
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
    /// (see [`proxy_name`]); `None` when no call is due. The call is then in flight until
    /// [`ConfigSource::answer`].
    pub fn request(
        &mut self,
        now: u64,
        nonce: String,
        proxy: &str,
    ) -> Option<Vec<(&'static str, String)>> {
        if !self.due(now) {
            return None;
        }
        let key = self.bootstrap.keys.first()?;
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
        headers.extend(request.headers(key));
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
            Some(304) => Answer::Unchanged,
            Some(200) => self.open(&call.nonce, body),
            other => Answer::Failed(failure(other)),
        };
        match &answer {
            Answer::Applied(..) | Answer::Unchanged => {
                self.last_contact = Some(now);
                self.retry_delay = FIRST_RETRY_SECS;
                self.failure = None;
                self.next_at = now.max(call.sent_at.saturating_add(MIN_INTERVAL_SECS));
            }
            // A refused answer waits as a failure does: a controller serving a document this filter
            // refuses would otherwise be asked again at once, by every worker, for ever.
            Answer::Refused(_) | Answer::Failed(_) => self.back_off(now, &answer),
        }
        answer
    }

    /// Opens a 200's envelope, sealed for the request whose nonce was `nonce`, and compiles it.
    fn open(&mut self, nonce: &str, body: &[u8]) -> Answer {
        let opened = match channel::open(&self.bootstrap.keys, nonce, body) {
            Ok(opened) => opened,
            Err(error) => return Answer::Refused(error.to_string()),
        };
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
        match Config::parse_delivered(&opened.document) {
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

/// Why a call that did not bring a 200 or 304 failed, with what to check.
fn failure(status: Option<u16>) -> String {
    match status {
        None => "no answer (connection refused or reset)".into(),
        Some(401) => format!(
            "the controller refused the request (401): its channel key differs from channelKeys, or \
             the clocks are more than {TOLERANCE_SECS} s apart"
        ),
        Some(503) => "the controller is not ready (503): no endpoint, or no complete compile yet".into(),
        Some(504) => "no answer in time (504)".into(),
        Some(status) => format!("the controller answered {status}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::Rejection;
    use hookgate_protocol::channel::{seal, NONCE_HEADER};
    use serde_json::json;

    const KEY: &str = "channel-key-0123456789abcdef0123456789";
    const NEXT_KEY: &str = "next-channel-key-0123456789abcdef0123";
    const OTHER_KEY: &str = "another-channel-key-0123456789abcdef";
    const ATTESTATION_KEY: &str = "attestation-key-0123456789";
    const RECEIVER_SECRET: &str = "receiver-secret-distinctive";
    const START: u64 = 1_800_000_000;
    const PROXY: &str = "envoy-default-hookgate-5d8f";
    const ANOTHER_NONCE: &str = "ffeeddccbbaa99887766554433221100";

    fn bootstrap() -> Bootstrap {
        Bootstrap::read(&json!({"controller": {"cluster": "c"}, "channelKeys": [KEY]})).unwrap()
    }

    fn key(material: &str) -> ChannelKey {
        ChannelKey::new(material.as_bytes()).unwrap()
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

    fn sealed(generation: u64, nonce: &str, document: &[u8]) -> Vec<u8> {
        seal(&key(KEY), generation, nonce, document, [7; 24])
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
                source: ConfigSource::new(bootstrap(), START),
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
        Refused(&'static str),
        Failed(&'static str),
    }

    /// Each case answers one call, after generation 5 (`webapp`) was applied 10 s before or (without
    /// `prior`) with nothing applied yet. A refused or failed answer keeps what was applied, waits before
    /// the next call and leaves the age growing; a 200 or 304 resets the age.
    #[test]
    fn answers() {
        let cases: Vec<(&str, bool, Reply, Expect)> = vec![
            (
                "applied",
                false,
                |n| (Some(200), sealed(5, n, &document(&["webapp"]))),
                Expect::Applied {
                    generation: 5,
                    receivers: 1,
                },
            ),
            (
                "a newer configuration replaces the applied one",
                true,
                |n| (Some(200), sealed(6, n, &document(&["webapp", "other"]))),
                Expect::Applied {
                    generation: 6,
                    receivers: 2,
                },
            ),
            (
                "unchanged 304",
                true,
                |_| (Some(304), vec![]),
                Expect::Unchanged,
            ),
            (
                "the same content under another generation is unchanged",
                true,
                |n| (Some(200), sealed(9, n, &document(&["webapp"]))),
                Expect::Unchanged,
            ),
            (
                "replayed envelope (sealed for another request)",
                true,
                |_| (Some(200), sealed(6, ANOTHER_NONCE, &document(&["other"]))),
                Expect::Refused("not authentic"),
            ),
            (
                "replayed before the first configuration",
                false,
                |_| (Some(200), sealed(6, ANOTHER_NONCE, &document(&["other"]))),
                Expect::Refused("not authentic"),
            ),
            (
                "older generation",
                true,
                |n| (Some(200), sealed(4, n, &document(&["other"]))),
                Expect::Refused("generation 4 is older than the applied generation 5"),
            ),
            (
                "tampered",
                true,
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
                "sealed under a key the filter does not hold",
                true,
                |n| {
                    (
                        Some(200),
                        seal(&key(OTHER_KEY), 6, n, &document(&["other"]), [7; 24]),
                    )
                },
                Expect::Refused("unknown channel key"),
            ),
            (
                "not an envelope",
                true,
                |_| (Some(200), document(&["other"])),
                Expect::Refused("malformed configuration envelope"),
            ),
            (
                "a document that does not compile: previous kept",
                true,
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
                true,
                |n| {
                    let document = String::from_utf8(document(&["webapp"])).unwrap();
                    let document = document.replace(
                        &format!(r#"{{"inline":"{RECEIVER_SECRET}"}}"#),
                        r#"{"env":"HOME"}"#,
                    );
                    (Some(200), sealed(6, n, document.as_bytes()))
                },
                Expect::Refused("environment variable HOME is not set"),
            ),
            (
                "controller down (no answer): previous kept",
                true,
                |_| (None, vec![]),
                Expect::Failed("no answer"),
            ),
            (
                "controller not ready",
                false,
                |_| (Some(503), vec![]),
                Expect::Failed("not ready (503)"),
            ),
            (
                "channel keys differ",
                true,
                |_| (Some(401), vec![]),
                Expect::Failed("(401)"),
            ),
            (
                "timeout",
                true,
                |_| (Some(504), vec![]),
                Expect::Failed("in time"),
            ),
        ];
        let mut failures = Vec::new();
        for (case, prior, reply, expect) in cases {
            let mut run = Run::new();
            if prior {
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
        let replies: [Reply; 3] = [
            |_| (Some(503), vec![]),
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
        run.exchange(|_| (Some(304), vec![]));
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

    /// While a call is in flight no other is made; a 304 held by the controller is followed by the next
    /// call at once, one answered at once a second later.
    #[test]
    fn one_call_at_a_time_and_no_loop() {
        let mut run = Run::new();
        run.send();
        assert!(run.source.request(run.now, "1".repeat(32), PROXY).is_none());
        run.now += LONG_POLL_SECS;
        assert!(!run.source.due(run.now));
        assert!(matches!(
            run.source.answer(run.now, Some(304), b""),
            Answer::Unchanged
        ));
        assert!(run.source.due(run.now), "the long poll goes on at once");
        assert!(matches!(
            run.exchange(|_| (Some(304), vec![])),
            Answer::Unchanged
        ));
        assert_eq!(
            run.wait(),
            MIN_INTERVAL_SECS,
            "an immediate 304 does not loop"
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
    fn the_age_counts_from_the_last_200_or_304() {
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
        run.exchange(|_| (Some(304), vec![]));
        assert_eq!(run.source.age(run.now + 2), 2);
    }

    /// The request is the protocol's, signed under the first key, naming the configuration applied.
    #[test]
    fn a_request_is_signed_and_names_what_is_served() {
        let mut run = Run::new();
        run.exchange(|n| (Some(200), sealed(5, n, &document(&["webapp"]))));
        run.now += 1;
        let nonce = "00112233445566778899aabbccddeeff".to_string();
        let headers = run.source.request(run.now, nonce.clone(), PROXY).unwrap();
        let get = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get(":method"), Some("GET"));
        assert_eq!(get(":path"), Some(CONFIGURATION_PATH));
        assert_eq!(get(":authority"), Some(DEFAULT_AUTHORITY));
        let verified = ConfigRequest::verify(get, &[key(OTHER_KEY), key(KEY)], run.now).unwrap();
        assert_eq!(verified.key_index, 1);
        assert_eq!(verified.request.nonce, nonce);
        assert_eq!(verified.request.proxy, PROXY);
        assert_eq!(&verified.request.known, run.source.known());
        assert_eq!(verified.request.known.generation, 5);
    }

    /// During a rotation the answer opens under whichever key it names.
    #[test]
    fn an_answer_opens_under_either_key() {
        let two = json!({"controller": {"cluster": "c"}, "channelKeys": [KEY, NEXT_KEY]});
        let mut source = ConfigSource::new(Bootstrap::read(&two).unwrap(), START);
        let nonce = "00112233445566778899aabbccddeeff";
        assert!(source.request(START, nonce.into(), PROXY).is_some());
        let envelope = seal(&key(NEXT_KEY), 3, nonce, &document(&["webapp"]), [1; 24]);
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
        let err = Bootstrap::parse(format!(r#"{{"channelKeys":["{KEY}"#).as_bytes()).unwrap_err();
        assert_eq!(err.field, "(document)");
        assert!(!err.to_string().contains(KEY), "{err}");
    }

    #[test]
    fn a_bootstrap_takes_defaults() {
        let bootstrap = bootstrap();
        assert_eq!(bootstrap.cluster, "c");
        assert_eq!(bootstrap.authority, DEFAULT_AUTHORITY);
        assert_eq!(bootstrap.timeout, Duration::from_secs(25));
        assert_eq!(bootstrap.keys.len(), 1);
        assert!(!format!("{bootstrap:?}").contains(KEY));
        let full = json!({"controller": {"cluster": "httproute/flux-system/hookgate-webhooks/rule/0",
                                          "authority": "controller.hookgate:8080", "timeoutMs": 30000},
                          "channelKeys": [KEY, NEXT_KEY]});
        let full = Bootstrap::read(&full).unwrap();
        assert_eq!(full.authority, "controller.hookgate:8080");
        assert_eq!(full.timeout, Duration::from_secs(30));
        assert_eq!(full.keys[1].id_hex(), key(NEXT_KEY).id_hex());
    }

    /// Each error names its field and never shows a key.
    #[test]
    fn bootstrap_errors_name_the_field_and_never_show_a_key() {
        let cases: Vec<(&str, Value, &str, &str)> = vec![
            (
                "no cluster",
                json!({"controller": {}, "channelKeys": [KEY]}),
                "controller.cluster",
                "is required",
            ),
            (
                "empty cluster",
                json!({"controller": {"cluster": ""}, "channelKeys": [KEY]}),
                "controller.cluster",
                "must name the Envoy cluster",
            ),
            (
                "controller not an object",
                json!({"controller": null, "channelKeys": [KEY]}),
                "controller",
                "must be a JSON object, not null",
            ),
            (
                "unknown field",
                json!({"controller": {"cluster": "c"}, "channelKeys": [KEY], "receivers": []}),
                "receivers",
                "unknown field",
            ),
            (
                "unknown controller field",
                json!({"controller": {"cluster": "c", "port": 1}, "channelKeys": [KEY]}),
                "controller.port",
                "unknown field",
            ),
            (
                "authority with a space",
                json!({"controller": {"cluster": "c", "authority": "a b"}, "channelKeys": [KEY]}),
                "controller.authority",
                "must be a host name",
            ),
            (
                "timeout shorter than the long poll",
                json!({"controller": {"cluster": "c", "timeoutMs": 20000}, "channelKeys": [KEY]}),
                "controller.timeoutMs",
                "must be from 21000 to 300000",
            ),
            (
                "no keys field",
                json!({"controller": {"cluster": "c"}}),
                "channelKeys",
                "is required",
            ),
            (
                "no keys",
                json!({"controller": {"cluster": "c"}, "channelKeys": []}),
                "channelKeys",
                "must hold one key",
            ),
            (
                "three keys",
                json!({"controller": {"cluster": "c"}, "channelKeys": [KEY, NEXT_KEY, OTHER_KEY]}),
                "channelKeys",
                "must hold one key",
            ),
            (
                "a key alone, not in a list",
                json!({"controller": {"cluster": "c"}, "channelKeys": KEY}),
                "channelKeys",
                "must be a list of strings, not a string",
            ),
            (
                "a key that is not a string",
                json!({"controller": {"cluster": "c"}, "channelKeys": [1234567890123456789u64]}),
                "channelKeys[0]",
                "must be a string, not a number",
            ),
            (
                "short key",
                json!({"controller": {"cluster": "c"}, "channelKeys": [KEY, "short-key"]}),
                "channelKeys[1]",
                "shorter than 16 bytes",
            ),
            (
                "key with a newline",
                json!({"controller": {"cluster": "c"}, "channelKeys": [format!("{KEY}\n")]}),
                "channelKeys[0]",
                "whitespace",
            ),
            (
                "the same key twice",
                json!({"controller": {"cluster": "c"}, "channelKeys": [KEY, KEY]}),
                "channelKeys[1]",
                "is the same key",
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
                    for secret in [KEY, "short-key", "1234567890123456789"] {
                        if shown.contains(secret) {
                            failures.push(format!("{case}: shows a key: {shown}"));
                        }
                    }
                }
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }
}
