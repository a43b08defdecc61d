//! proxy-wasm glue: moves headers and body between Envoy and [`Filter`], answers locally or rewrites the
//! request, or, for a request without a body to rewrite, sends the forward itself and relays the
//! controller's reply ([`relay`]). No decisions are made here.
//!
//! Envoy must hold the headers while the body is buffered (`allow_on_headers_stop_iteration: true` in the
//! plugin configuration); otherwise the router would open the upstream request before verification.
//!
//! With a bootstrap as plugin configuration, the root context long-polls the controller for the
//! configuration ([`ConfigSource`] decides when and what to make of each answer). Each worker thread of
//! Envoy has its own VM and root context, which polls on its own, with a key of its own: the controller
//! serves a VM once it is confirmed. The controller posts the confirmation to [`channel::CONFIRMATION_PATH`]
//! on hookgate's route; whichever worker takes the post keeps it in the shared data of this `vm_id`, and
//! the VM it is for reads it there at its next tick.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType, MetricType};

use crate::channel::{self, Answer, Bootstrap, ConfigSource};
use crate::config::{Config, ConfigError};
use crate::delivery::Headers;
use crate::forward::Forward;
use crate::id_token;
use crate::label::{unmatched_metric_name, ReceiverLabel};
use crate::outcome::{Counted, Outcome, Rejection, Reply};
use crate::pipeline::{Filter, ReceiverId};
use crate::relay::{self, CallResponse, Relayed};
use hookgate_protocol::enrollment::MAX_CONFIRMATION_BODY;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(HookgateRoot::default()) });
}}

/// Counters through the proxy-wasm metrics API, defined on first use (defining is idempotent in Envoy) and
/// then found by receiver and [`Counted`] outcome: a counter's name is formatted once, not per request.
/// Receiver ids are those of one configuration: each configuration gets its own `Metrics`.
#[derive(Default)]
struct Metrics(RefCell<HashMap<(Option<ReceiverId>, Counted), u32>>);

impl Metrics {
    /// Adds one to the counter of `outcome` for `receiver` (`None`: before any receiver matched), named
    /// `name()` if it is not defined yet.
    fn increment(
        &self,
        receiver: Option<ReceiverId>,
        outcome: Counted,
        name: impl FnOnce() -> String,
    ) {
        let Some(id) = self.define(receiver, outcome, name) else {
            return;
        };
        if let Err(status) = proxy_wasm::hostcalls::increment_metric(id, 1) {
            log::debug!("cannot increment metric {id}: {status:?}");
        }
    }

    /// The counter of `outcome` for `receiver`, defined (at 0) as `name()` if it is not yet; `None`
    /// (logged) if the host refuses.
    fn define(
        &self,
        receiver: Option<ReceiverId>,
        outcome: Counted,
        name: impl FnOnce() -> String,
    ) -> Option<u32> {
        let mut ids = self.0.borrow_mut();
        if let Some(id) = ids.get(&(receiver, outcome)) {
            return Some(*id);
        }
        let id = define_metric(MetricType::Counter, &name())?;
        Some(*ids.entry((receiver, outcome)).or_insert(id))
    }

    /// Defines the counters of the refusals before any receiver matched, so that they read 0 until the
    /// first: a counter that appears at 1 hides that refusal from the alerts' `increase()`.
    fn define_unmatched(&self) {
        for rejection in [Rejection::NotConfigured, Rejection::UnknownPath] {
            self.define(None, Counted::Rejected(rejection), || {
                unmatched_metric_name(rejection)
            });
        }
    }
}

/// Defines the metric `name`; `None` (logged) if the host refuses.
fn define_metric(metric_type: MetricType, name: &str) -> Option<u32> {
    hostcalls::define_metric(metric_type, name)
        .map_err(|status| log::debug!("cannot define metric {name}: {status:?}"))
        .ok()
}

/// Unix seconds by the host's clock.
fn unix_secs(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[derive(Default)]
struct HookgateRoot {
    /// `None` until configured, and after an invalid configuration: requests are then refused. With a
    /// bootstrap, `None` until the controller's first configuration is applied.
    filter: Option<Rc<Filter>>,
    metrics: Rc<Metrics>,
    /// Set with a bootstrap: the configuration comes from the controller.
    live: Option<Live>,
    /// Set with `live`: the HTTP contexts then take the controller's confirmations.
    enrollment: Option<Rc<Enrollment>>,
    /// Set with `live`: where the HTTP contexts send a bodyless delivery's forward ([`relay`]).
    controller: Option<Rc<ControllerRoute>>,
}

/// The bootstrap's cluster and authority that reach the controller.
struct ControllerRoute {
    cluster: String,
    authority: String,
}

/// What an HTTP context needs to take a confirmation the controller posts: the counter of those stored.
struct Enrollment {
    received: Option<u32>,
}

impl Context for HookgateRoot {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        let started = self.get_current_time();
        let now = unix_secs(started);
        let Some(live) = self.live.as_mut() else {
            return;
        };
        if live.call != Some(token_id) {
            log::debug!("hookgate: ignoring the answer to call {token_id}, not awaited");
            return;
        }
        live.call = None;
        // A call that failed (reset) has no response: the host is not asked for its maps then.
        let status = if num_headers > 0 {
            response_status()
        } else {
            None
        };
        if body_size > channel::MAX_ANSWER_BYTES {
            let before = Before::of(&live.source);
            let answer = live.source.oversized(now, body_size);
            let _ = live.settle(answer, before, self.filter.is_some());
            live.record_age(now);
            return;
        }
        let body = if body_size > 0 {
            call_response_body(body_size)
        } else {
            Vec::new()
        };
        let before = Before::of(&live.source);
        let answer = live.source.answer(now, status, &body);
        if let Answer::Applied(config, _) = &answer {
            // Opening and compiling, on this worker: what a large configuration costs a VM.
            let took = hostcalls::get_current_time()
                .ok()
                .and_then(|t| t.duration_since(started).ok())
                .unwrap_or_default();
            live.record(live.load, took.as_millis() as u64);
            live.record(live.receivers, config.receivers.len() as u64);
        }
        if let Some(config) = live.settle(answer, before, self.filter.is_some()) {
            self.metrics = Rc::default();
            self.filter = Some(Rc::new(Filter::new(config)));
        }
        if let Some(live) = self.live.as_mut() {
            // After a 200 or 304 the next long poll starts now; after a failure `ConfigSource` waits.
            live.poll(now);
            live.record_age(now);
        }
    }
}

impl RootContext for HookgateRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        // Envoy's level for Wasm logs, read again at every configuration: lines below it are then never
        // formatted (the `log` macros check the maximum level first), where they used to be formatted and
        // handed to Envoy only to be dropped (an accepted delivery logs at info, Envoy Gateway runs at warn).
        if let Ok(level) = proxy_wasm::hostcalls::get_log_level() {
            proxy_wasm::set_log_level(level);
        }
        self.metrics = Rc::default();
        self.metrics.define_unmatched();
        self.live = None;
        self.enrollment = None;
        self.controller = None;
        let raw = self.get_plugin_configuration().unwrap_or_default();
        match Bootstrap::parse(&raw) {
            Ok(bootstrap) => self.start_live(bootstrap),
            Err(error) => {
                // Fail closed: keep running, refuse every request, say why once here.
                log::error!("hookgate: invalid configuration, refusing every request: {error}");
                self.filter = None;
            }
        }
        // Returning true keeps the plugin loaded so the refusal is explicit (503) rather than a missing filter.
        true
    }

    fn on_tick(&mut self) {
        let now = unix_secs(self.get_current_time());
        if let Some(live) = self.live.as_mut() {
            live.read_confirmation();
            live.poll(now);
            live.record_age(now);
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(HookgateHttp {
            filter: self.filter.clone(),
            metrics: self.metrics.clone(),
            receiver: None,
            headers: None,
            answered: false,
            enrollment: self.enrollment.clone(),
            confirming: false,
            controller: self.controller.clone(),
            call: None,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

impl HookgateRoot {
    /// Starts polling the controller. Until its first configuration is applied every delivery is
    /// refused (503): failing closed, as for an invalid configuration.
    fn start_live(&mut self, bootstrap: Bootstrap) {
        self.filter = None;
        // This VM's own key: without randomness there is none, and no configuration ever.
        let mut random = [0u8; 32];
        if let Err(error) = getrandom::fill(&mut random) {
            log::error!(
                "hookgate: no random source from the host ({error}): this VM cannot draw its key, \
                 refusing every request"
            );
            return;
        }
        log::info!(
            "hookgate: fetching the configuration from cluster {} ({} controller key(s))",
            bootstrap.cluster,
            bootstrap.keys.len()
        );
        let now = unix_secs(self.get_current_time());
        let controller = ControllerRoute {
            cluster: bootstrap.cluster.clone(),
            authority: bootstrap.authority.clone(),
        };
        match Live::new(bootstrap, random, now) {
            Ok(live) => {
                // Registered, the VM's key is one a posted confirmation may be kept for.
                let registration = channel::registration(&live.source.vm_key());
                if let Err(status) = hostcalls::set_shared_data(&registration, Some(b"1"), None) {
                    log::error!(
                        "hookgate: cannot register this VM's key in shared data ({status:?})"
                    );
                }
                self.live = Some(live);
            }
            Err(error) => {
                log::error!("hookgate: invalid configuration, refusing every request: {error}");
                return;
            }
        }
        self.controller = Some(Rc::new(controller));
        self.enrollment = Some(Rc::new(Enrollment {
            received: define_metric(MetricType::Counter, channel::CONFIRMATIONS_METRIC),
        }));
        // The first call is made at the first tick: the clusters may not be ready while configuring.
        self.set_tick_period(Duration::from_secs(1));
    }
}

/// What a VM knew before an answer: what its log of the answer depends on.
struct Before {
    failing: Option<String>,
    awaiting: bool,
}

impl Before {
    fn of(source: &ConfigSource) -> Self {
        Self {
            failing: source.failing().map(str::to_owned),
            awaiting: source.awaiting(),
        }
    }
}

/// The root context's polling of the controller.
struct Live {
    source: ConfigSource,
    /// The shared-data slot this VM's confirmation arrives in, and the version of it last read.
    slot: String,
    slot_read: Option<u32>,
    /// Envoy's node id, made valid for the channel: read once, it does not change.
    proxy: String,
    /// The token of the call in flight: an answer to any other call is not (or no longer) awaited.
    call: Option<u32>,
    refused: Option<u32>,
    age: Option<u32>,
    /// Milliseconds the last configuration applied took to open and compile.
    load: Option<u32>,
    /// Receivers in the configuration served.
    receivers: Option<u32>,
}

impl Live {
    fn new(bootstrap: Bootstrap, vm_random: [u8; 32], now: u64) -> Result<Self, ConfigError> {
        let source = ConfigSource::new(bootstrap, vm_random, now)?;
        let node_id = hostcalls::get_property(vec!["node", "id"]).ok().flatten();
        Ok(Self {
            slot: source.slot(),
            slot_read: None,
            source,
            proxy: channel::proxy_name(node_id.as_deref()),
            call: None,
            refused: define_metric(MetricType::Counter, channel::REFUSED_METRIC),
            age: define_metric(MetricType::Gauge, channel::AGE_METRIC),
            load: define_metric(MetricType::Gauge, channel::LOAD_METRIC),
            receivers: define_metric(MetricType::Gauge, channel::RECEIVERS_METRIC),
        })
    }

    /// Looks for this VM's confirmation in its slot, while it wants one, and opens it. A version of the
    /// slot already read is not read again.
    fn read_confirmation(&mut self) {
        if !self.source.wants_confirmation() {
            return;
        }
        let (value, version) = match hostcalls::get_shared_data(&self.slot) {
            Ok((Some(value), version)) => (value, version),
            Ok((None, _)) => return,
            Err(status) => {
                log::debug!("hookgate: cannot read the confirmation slot: {status:?}");
                return;
            }
        };
        if version.is_some() && version == self.slot_read {
            return;
        }
        self.slot_read = version;
        // Another VM's (sharing the slot) is left for it.
        let Some(envelope) = self.source.envelope_in_slot(&value) else {
            return;
        };
        if self.source.confirmation(&envelope) {
            log::info!("hookgate: the controller's confirmation of this VM opened");
        } else {
            log::warn!(
                "hookgate: a confirmation for this VM's key did not open under its sessions \
                 (another controller key, or altered): refused"
            );
        }
    }

    /// Sends the call for the configuration, if one is due.
    fn poll(&mut self, now: u64) {
        if !self.source.due(now) {
            return;
        }
        let Some(nonce) = crate::nonce::fresh() else {
            log::debug!(
                "hookgate: no random nonce from the host: the call waits for the next tick"
            );
            return;
        };
        let Some(headers) = self.source.request(now, nonce, &self.proxy) else {
            return;
        };
        let bootstrap = self.source.bootstrap();
        let headers = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        match hostcalls::dispatch_http_call(
            &bootstrap.cluster,
            headers,
            None,
            vec![],
            bootstrap.timeout,
        ) {
            Ok(token) => self.call = Some(token),
            Err(status) => {
                let before = Before::of(&self.source);
                let answer = self.source.not_sent(now, &format!("{status:?}"));
                // Never `Applied`: nothing to swap in.
                let _ = self.settle(answer, before, false);
            }
        }
    }

    /// Logs and counts `answer`; the configuration to serve if it brought one. A failure is logged at warn
    /// when it starts or its reason changes (its end at info), else at debug: not once per call.
    fn settle(&self, answer: Answer, before: Before, serving: bool) -> Option<Config> {
        match answer {
            Answer::Applied(config, generation) => {
                log::info!(
                    "hookgate: configuration generation {generation} applied ({} receivers)",
                    config.receivers.len()
                );
                Some(config)
            }
            Answer::Unchanged => {
                if before.failing.is_some() {
                    log::info!("hookgate: the controller answers again");
                }
                None
            }
            Answer::Pending => {
                if before.awaiting {
                    log::debug!("hookgate: waiting for the controller to confirm this VM");
                } else {
                    log::info!("hookgate: waiting for the controller to confirm this VM");
                }
                None
            }
            Answer::Refused(reason) => {
                log::warn!("hookgate: configuration from the controller refused: {reason}");
                if let Some(id) = self.refused {
                    if let Err(status) = hostcalls::increment_metric(id, 1) {
                        log::debug!("cannot increment metric {id}: {status:?}");
                    }
                }
                None
            }
            Answer::Failed(reason) => {
                let serving = if serving {
                    "the last configuration applied keeps serving"
                } else {
                    "every delivery is refused until the first configuration"
                };
                if before.failing.as_deref() == Some(reason.as_str()) {
                    log::debug!("hookgate: cannot fetch the configuration: {reason}");
                } else {
                    // At warn: Envoy Gateway's proxies log Wasm at warn, and this is the one line
                    // that says the controller cannot be reached.
                    log::warn!("hookgate: cannot fetch the configuration: {reason}; {serving}");
                }
                None
            }
        }
    }

    fn record_age(&self, now: u64) {
        self.record(self.age, self.source.age(now));
    }

    /// Sets the gauge `metric` (if it could be defined) to `value`.
    fn record(&self, metric: Option<u32>, value: u64) {
        if let Some(id) = metric {
            if let Err(status) = hostcalls::record_metric(id, value) {
                log::debug!("cannot record metric {id}: {status:?}");
            }
        }
    }
}

/// Whether `registration` is in this filter's shared data (see `channel::REGISTRATION_PREFIX`).
fn registered(registration: &str) -> bool {
    matches!(hostcalls::get_shared_data(registration), Ok((Some(_), _)))
}

/// The first `size` bytes of the body of the call response being handled (empty if the host has none).
fn call_response_body(size: usize) -> Vec<u8> {
    hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, size)
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// The `:status` of the response to a call, if it has a readable one.
fn response_status() -> Option<u16> {
    relay::status_of(&hostcalls::get_map_bytes(MapType::HttpCallResponseHeaders).ok()?)
}

struct HookgateHttp {
    filter: Option<Rc<Filter>>,
    metrics: Rc<Metrics>,
    receiver: Option<ReceiverId>,
    /// The request headers, fetched once when they arrive and kept for the decision on the body.
    headers: Option<Headers>,
    answered: bool,
    /// Set in live mode: confirmations posted by the controller are taken here.
    enrollment: Option<Rc<Enrollment>>,
    /// This request is a confirmation: the filter answers it, it is never forwarded.
    confirming: bool,
    /// Set in live mode: the controller's cluster, for a forward sent by a call.
    controller: Option<Rc<ControllerRoute>>,
    /// The token of this request's call to the controller, while it is awaited, and the call itself (to
    /// send again if no replica took it).
    call: Option<(u32, relay::Call)>,
}

impl Context for HookgateHttp {
    /// The controller's reply to a bodyless delivery's forward: relayed to the sender.
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        let Some((_, call)) = self.call.take_if(|(token, _)| *token == token_id) else {
            return;
        };
        // A call that failed (reset, timeout) has no response: the host is not asked for its maps then.
        let response = (num_headers > 0).then(|| CallResponse {
            headers: hostcalls::get_map_bytes(MapType::HttpCallResponseHeaders).unwrap_or_default(),
            body_size,
        });
        if let Some(again) = response
            .as_ref()
            .and_then(|r| call.again(r, call_response_body))
        {
            log::info!(
                "hookgate: no replica of the controller took a forward sent by a call: sent again"
            );
            self.send_call(again);
            return;
        }
        let reply = relay::reply(response, call_response_body);
        let label = self
            .filter
            .as_deref()
            .zip(self.receiver)
            .and_then(|(filter, id)| filter.label(id))
            .map_or("-", ReceiverLabel::as_str);
        let level = match reply.status {
            500.. => log::Level::Warn,
            _ => log::Level::Info,
        };
        log::log!(
            level,
            "hookgate: receiver {label}: forwarded without a body, answered {}",
            reply.status
        );
        self.send_relayed(&reply);
    }
}

impl HttpContext for HookgateHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        // In live mode a VM is confirmed before its first configuration: a confirmation is taken before
        // the refusal of an unconfigured filter. One host call for the whole map, where fetching the
        // three headers needed here one by one and the map again for the decision took four.
        let mut fetched = None;
        if self.enrollment.is_some() {
            let headers = Headers::from_owned(self.get_http_request_headers_bytes());
            let method = headers.get(":method").unwrap_or_default();
            if channel::is_confirmation_post(method, headers.get(":path").unwrap_or_default()) {
                return self.begin_confirmation(end_of_stream);
            }
            fetched = Some(headers);
        }
        let Some(filter) = self.filter.clone() else {
            return self.reject_unmatched(Rejection::NotConfigured);
        };
        let headers = match fetched {
            Some(headers) => headers,
            None => Headers::from_owned(self.get_http_request_headers_bytes()),
        };
        let Some(id) = filter.route(headers.get(":path").unwrap_or_default()) else {
            return self.reject_unmatched(Rejection::UnknownPath);
        };
        self.receiver = Some(id);
        let method = headers.get(":method").unwrap_or_default();
        match filter.admit(id, method, headers.get("content-length")) {
            Err(rejection) => self.conclude(&filter, id, Outcome::Reject(rejection), None, 0),
            Ok(()) => {
                if end_of_stream {
                    self.decide(&filter, id, headers, Vec::new(), 0)
                } else {
                    // Hold the headers; the body callbacks decide.
                    self.headers = Some(headers);
                    Action::Pause
                }
            }
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.confirming {
            return self.confirmation_body(body_size, end_of_stream);
        }
        let (Some(filter), Some(id)) = (self.filter.clone(), self.receiver) else {
            return Action::Pause;
        };
        if self.answered {
            return Action::Pause;
        }
        if let Err(rejection) = filter.check_body_size(id, body_size as u64) {
            return self.conclude(&filter, id, Outcome::Reject(rejection), None, body_size);
        }
        if !end_of_stream {
            return Action::Pause;
        }
        let body = self.get_http_request_body(0, body_size).unwrap_or_default();
        let headers = self.held_headers();
        self.decide(&filter, id, headers, body, body_size)
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        // Trailers end the stream without an end-of-stream body callback.
        if self.confirming {
            if self.answered {
                return Action::Pause;
            }
            let body = self
                .get_http_request_body(0, usize::MAX)
                .unwrap_or_default();
            return self.take_confirmation(&body);
        }
        let (Some(filter), Some(id)) = (self.filter.clone(), self.receiver) else {
            return Action::Pause;
        };
        if self.answered {
            return Action::Pause;
        }
        let body = self
            .get_http_request_body(0, usize::MAX)
            .unwrap_or_default();
        let size = body.len();
        let headers = self.held_headers();
        let action = self.decide(&filter, id, headers, body, size);
        if action == Action::Continue {
            // The trailers are the provider's too: nothing of them goes to the controller.
            self.set_http_request_trailers(vec![]);
        }
        action
    }
}

impl HookgateHttp {
    /// Holds a POST to the confirmation path to read its body; one without a body is refused.
    fn begin_confirmation(&mut self, end_of_stream: bool) -> Action {
        self.confirming = true;
        if end_of_stream {
            self.take_confirmation(&[])
        } else {
            Action::Pause
        }
    }

    /// The body of a confirmation so far (`body_size` bytes buffered): refused once over the limit,
    /// taken once complete.
    fn confirmation_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.answered {
            return Action::Pause;
        }
        if body_size > MAX_CONFIRMATION_BODY {
            log::info!("hookgate: refused a confirmation over {MAX_CONFIRMATION_BODY} bytes");
            self.answer(&channel::confirmation_too_large());
            return Action::Pause;
        }
        if !end_of_stream {
            return Action::Pause;
        }
        let body = self.get_http_request_body(0, body_size).unwrap_or_default();
        self.take_confirmation(&body)
    }

    /// Stores a confirmation's whole body in the slot of the VM key it names, for that VM to read, and
    /// answers 202; anything else is refused. Never forwarded; the body is never logged.
    fn take_confirmation(&mut self, body: &[u8]) -> Action {
        let reply = match channel::posted_confirmation(body) {
            // Only for a key a VM of this filter registered: no one fills or overwrites slots blindly.
            Ok(slot) if !registered(&channel::registration_for_slot(&slot)) => {
                log::info!("hookgate: refused a confirmation for a key no VM here registered");
                channel::confirmation_refused(404, "no such VM")
            }
            Ok(slot) => match hostcalls::set_shared_data(&slot, Some(body), None) {
                Ok(()) => {
                    if let Some(id) = self.enrollment.as_ref().and_then(|e| e.received) {
                        if let Err(status) = hostcalls::increment_metric(id, 1) {
                            log::debug!("cannot increment metric {id}: {status:?}");
                        }
                    }
                    log::info!("hookgate: a confirmation from the controller was received");
                    channel::confirmation_stored()
                }
                Err(status) => {
                    log::warn!("hookgate: cannot keep a confirmation in shared data: {status:?}");
                    channel::confirmation_refused(503, "cannot keep the confirmation")
                }
            },
            Err(reply) => {
                log::info!(
                    "hookgate: refused a post to the confirmation path with {}",
                    reply.status
                );
                reply
            }
        };
        self.answer(&reply);
        Action::Pause
    }

    /// The headers kept by the headers callback (fetched again if they were not).
    fn held_headers(&mut self) -> Headers {
        match self.headers.take() {
            Some(headers) => headers,
            None => Headers::from_owned(self.get_http_request_headers_bytes()),
        }
    }

    fn decide(
        &mut self,
        filter: &Filter,
        id: ReceiverId,
        headers: Headers,
        body: Vec<u8>,
        body_size: usize,
    ) -> Action {
        let now = unix_secs(self.get_current_time());
        // The request's dynamic metadata, where Envoy's JWT filter (it ran before this filter, and its
        // metadata lasts the request) put what it verified for the receiver's `jwt` provider. Nothing
        // there: no verified claims, and the filter refuses.
        let verified_token = filter.jwt_provider(id).and_then(|_| {
            proxy_wasm::hostcalls::get_property(id_token::METADATA_PROPERTY.to_vec())
                .ok()
                .flatten()
        });
        let outcome = filter.on_body(id, &headers, &body, now, verified_token.as_deref());
        self.conclude(filter, id, outcome, Some(&headers), body_size)
    }

    /// Records the outcome, then answers locally or lets the rewritten request go.
    fn conclude(
        &mut self,
        filter: &Filter,
        id: ReceiverId,
        outcome: Outcome,
        headers: Option<&Headers>,
        body_size: usize,
    ) -> Action {
        let label = filter.label(id);
        if let Some(label) = label {
            self.metrics
                .increment(Some(id), outcome.counted(), || label.metric_name(&outcome));
        }
        let label = label.map_or("-", ReceiverLabel::as_str);
        match outcome {
            Outcome::Forward(forward) => {
                log::info!(
                    "hookgate: receiver {label}: accepted event {:?} delivery {:?}",
                    forward.request.event.as_deref().unwrap_or("-"),
                    forward.request.delivery_id.as_deref().unwrap_or("-")
                );
                if relay::by_call(body_size) {
                    return self.forward_by_call(&forward, headers);
                }
                self.rewrite(&forward, headers, body_size);
                Action::Continue
            }
            other => {
                match &other {
                    Outcome::Reject(rejection) => log::warn!(
                        "hookgate: receiver {label}: rejected with {}: {}",
                        rejection.status(),
                        rejection.reason()
                    ),
                    Outcome::Ignored(reason) => {
                        log::info!("hookgate: receiver {label}: ignored: {reason}")
                    }
                    _ => log::info!("hookgate: receiver {label}: answered ping"),
                }
                if let Some(reply) = other.reply() {
                    self.answer(&reply);
                }
                Action::Pause
            }
        }
    }

    /// A refusal before any receiver is known (unknown path, or no valid configuration). Logged at warn,
    /// as a receiver's refusals: Envoy Gateway runs its proxies' Wasm logs at warn, and a path moved by a
    /// token change is seen first here. The rate limit in front of the filter caps the lines per client.
    fn reject_unmatched(&mut self, rejection: Rejection) -> Action {
        self.metrics
            .increment(None, Counted::Rejected(rejection), || {
                unmatched_metric_name(rejection)
            });
        log::warn!(
            "hookgate: rejected with {}: {}",
            rejection.status(),
            rejection.reason()
        );
        self.answer(&Reply::rejection(rejection));
        Action::Pause
    }

    fn answer(&mut self, reply: &Reply) {
        self.answered = true;
        self.send_http_response(
            reply.status,
            vec![("content-type", "application/json")],
            Some(reply.body.as_bytes()),
        );
    }

    /// Sends the attested request to the controller's cluster itself, for a request without a body to
    /// replace; the sender is answered when the controller replies ([`relay`]).
    fn forward_by_call(&mut self, forward: &Forward, original: Option<&Headers>) -> Action {
        self.answered = true;
        let Some(controller) = self.controller.clone() else {
            self.send_relayed(&Relayed::unreachable());
            return Action::Pause;
        };
        let original = self.given_or_fetched(original);
        self.send_call(relay::Call {
            cluster: controller.cluster.clone(),
            headers: relay::call_headers(forward, &controller.authority, &original),
            body: forward.body.clone(),
            retries: relay::CALL_RETRIES,
        });
        Action::Pause
    }

    /// Sends `call`; the sender is answered when it completes, or now if it cannot be sent.
    fn send_call(&mut self, call: relay::Call) {
        match self.dispatch_http_call(
            &call.cluster,
            call.headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect(),
            Some(&call.body),
            vec![],
            relay::CALL_TIMEOUT,
        ) {
            Ok(token) => self.call = Some((token, call)),
            Err(status) => {
                log::warn!("hookgate: cannot call the controller's cluster: {status:?}");
                self.send_relayed(&Relayed::unreachable());
            }
        }
    }

    /// The request headers `given`, or fetched from the host if none were.
    fn given_or_fetched<'a>(&self, given: Option<&'a Headers>) -> Cow<'a, Headers> {
        match given {
            Some(headers) => Cow::Borrowed(headers),
            None => Cow::Owned(Headers::from_owned(self.get_http_request_headers_bytes())),
        }
    }

    fn send_relayed(&mut self, reply: &Relayed) {
        self.send_http_response(
            reply.status,
            vec![("content-type", reply.content_type.as_str())],
            Some(&reply.body),
        );
    }

    /// Replaces the held request with the attested reconcile request: one header-map replacement and one
    /// body replacement.
    fn rewrite(&mut self, forward: &Forward, original: Option<&Headers>, body_size: usize) {
        self.answered = true;
        let original = self.given_or_fetched(original);
        let headers = forward.request_headers(&original);
        self.set_http_request_headers_bytes(
            headers
                .iter()
                .map(|(name, value)| (name.as_str(), value.as_slice()))
                .collect(),
        );
        self.set_http_request_body(0, body_size, &forward.body);
    }
}
