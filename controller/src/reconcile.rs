//! Turns an attested reconcile request into annotation patches on the API server.
//!
//! Every target is checked before the first API call (field syntax, kind, namespace, wildcard shape), so
//! nothing malformed reaches a request path or a label selector. As in Flux, a target refused there is
//! reported alone and the others are applied (the answer is then 500); only a malformed request or a filter
//! that does not compile refuses the whole request. Patches then run in parallel with a bound;
//! transient API errors are retried with backoff until a deadline shorter than the providers' 10 seconds.
//!
//! The reply goes to the provider's delivery log, outside the cluster: it reports each configured target
//! with a stable status code (a wildcard with counts), never an API server message (which names the
//! ServiceAccount and its groups) nor the names of the objects a wildcard matched. Those go to the
//! controller's log.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::FutureExt;
use futures::stream::{self, StreamExt};
use hookgate_cel::{Expression, Value, TARGET_VARIABLES};
use hookgate_protocol::{AttestedRequest, Target};
use http::StatusCode;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams};
use kube::Client;
use serde::{Serialize, Serializer};
use tokio::time::Instant;

use crate::coalesce::Coalescer;
use crate::error::{Error, Result};
use crate::kinds::{self, resolve, Resolved};
use crate::metrics::Metrics;
use crate::retry::{self, Policy};

#[derive(Clone, Debug)]
pub struct Settings {
    pub allow_cross_namespace: bool,
    pub max_concurrency: usize,
    /// Total time budget of one request, retries included.
    pub deadline: Duration,
    pub field_manager: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            allow_cross_namespace: false,
            max_concurrency: 32,
            deadline: Duration::from_secs(8),
            field_manager: "hookgate".into(),
        }
    }
}

/// What happened to one target (or, for a wildcard, to one of its matches). Listed from best to worst: a
/// wildcard reports the worst of its matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum TargetStatus {
    Annotated,
    /// Not patched: a target filter was false for the object.
    Filtered,
    /// A wildcard that matched nothing: reported, not an error.
    NoMatches,
    NotFound,
    /// Not patched: a target filter could not be evaluated for the object (fails closed, as Flux).
    FilterError,
    /// Refused before any API call: a field outside Kubernetes' syntax, or `*` without `matchLabels`.
    Invalid,
    /// Refused before any API call: a kind outside the allow-list (or of another group).
    KindNotAllowed,
    /// Refused before any API call: outside the receiver's namespace without `--allow-cross-namespace`.
    CrossNamespace,
    Failed,
    Forbidden,
    /// The API server could not be reached (or kept failing) until the deadline.
    Unavailable,
}

impl TargetStatus {
    fn is_failure(self) -> bool {
        !matches!(self, Self::Annotated | Self::Filtered | Self::NoMatches)
    }
    /// The stable code the reply carries, also the `outcome` label of the annotation metric.
    pub fn code(self) -> &'static str {
        match self {
            Self::Annotated => "annotated",
            Self::Filtered => "filtered",
            Self::NoMatches => "no_matches",
            Self::FilterError => "filter_error",
            Self::NotFound => "not_found",
            Self::Forbidden => "forbidden",
            Self::Unavailable => "unavailable",
            Self::Failed => "failed",
            Self::Invalid => "invalid",
            Self::KindNotAllowed => "kind_not_allowed",
            Self::CrossNamespace => "cross_namespace",
        }
    }
}

impl Serialize for TargetStatus {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.code())
    }
}

/// The outcome of one configured target, as the reply shows it: the target as configured (a wildcard stays
/// `*` with its labels), its status and, for a wildcard, how many objects matched and what happened to them.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetResult {
    pub api_version: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    pub status: TargetStatus,
    /// Wildcards whose list succeeded: how many objects matched.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub matched: Option<usize>,
    /// Wildcards with matches: how many objects ended in each status.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub counts: BTreeMap<TargetStatus, usize>,
    /// When the earliest patch that annotated one of its objects started: for a Flux kind, the
    /// `requestedAt` value written. Always after the request arrived, also when the patch was shared
    /// with other requests (see `coalesce`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requested_at: Option<String>,
    /// Why a target was refused before any API call (the field and rule at fault; names, never payload values).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Every object's outcome (one for a named target or a failed list), for the reply's status code.
    #[serde(skip)]
    pub outcomes: Vec<TargetStatus>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub receiver: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery_id: Option<String>,
    pub annotated: usize,
    pub failed: usize,
    pub targets: Vec<TargetResult>,
}

/// What a reconcile request that passed validation came to, over all its objects: the reply's status (a
/// failure shows in the provider's delivery log, and the delivery can be redelivered) and the request
/// metric's `outcome` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing failed.
    Ok,
    /// Every object is missing.
    NotFound,
    /// The API server was unavailable for one of them at least.
    Unavailable,
    /// Anything else failed.
    Failed,
}

impl Outcome {
    pub fn status(self) -> StatusCode {
        match self {
            Self::Ok => StatusCode::OK,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Failed => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn metric_label(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::NotFound => "not_found",
            Self::Unavailable => "unavailable",
            Self::Failed => "failed",
        }
    }
}

impl Summary {
    pub fn outcome(&self) -> Outcome {
        let outcomes: Vec<TargetStatus> = self
            .targets
            .iter()
            .flat_map(|t| t.outcomes.iter().copied())
            .collect();
        let failures: Vec<TargetStatus> = outcomes
            .iter()
            .copied()
            .filter(|s| s.is_failure())
            .collect();
        if failures.is_empty() {
            Outcome::Ok
        } else if failures.contains(&TargetStatus::Unavailable) {
            Outcome::Unavailable
        } else if failures.len() == outcomes.len()
            && failures.iter().all(|s| *s == TargetStatus::NotFound)
        {
            Outcome::NotFound
        } else {
            Outcome::Failed
        }
    }
}

/// A target that passed validation.
struct Planned {
    resolved: Resolved,
    /// Built once per target, not once per patched object.
    resource: ApiResource,
    api: Api<DynamicObject>,
    namespace: String,
    target: Target,
    /// `namespace/name` of the receiver, for the log.
    receiver: String,
    /// The request's `resourceFilter`, then the target's `filter`: an object is patched only where every
    /// one is true.
    filters: Vec<Arc<Expression>>,
}

/// A configured target: planned, or refused alone with its line of the reply. One per configured target of
/// one request, so the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
enum Step {
    Planned(Planned),
    Refused(TargetResult),
}

/// The namespace a target is in: its own, or the receiver's.
fn target_namespace(request: &AttestedRequest, target: &Target) -> String {
    target
        .namespace
        .clone()
        .filter(|ns| !ns.is_empty())
        .unwrap_or_else(|| request.receiver.namespace.clone())
}

/// The reply's line for a target refused before any API call: the target as configured.
fn refused_result(
    request: &AttestedRequest,
    target: &Target,
    status: TargetStatus,
    detail: String,
) -> TargetResult {
    TargetResult {
        api_version: target.api_version.clone().unwrap_or_default(),
        kind: target.kind.clone(),
        namespace: target_namespace(request, target),
        name: target.name.clone(),
        match_labels: target.match_labels.clone(),
        status,
        matched: None,
        counts: BTreeMap::new(),
        requested_at: None,
        detail: Some(detail),
        outcomes: vec![status],
    }
}

/// An object a target stands for: its name and, where a filter reads it, its metadata.
struct Candidate {
    name: String,
    metadata: Option<ObjectMeta>,
}

/// One object on the API server: its group, resource (plural), namespace and name.
type ObjectKey = (String, String, String, String);

/// What one patch came to: the `requestedAt` it wrote (the time it started), or why it failed.
type PatchResult = std::result::Result<String, (TargetStatus, String)>;

pub struct Reconciler {
    client: Client,
    settings: Settings,
    metrics: Arc<Metrics>,
    /// Requests for the same object share patches (see `coalesce`).
    patches: Arc<Coalescer<ObjectKey, PatchResult>>,
}

impl Reconciler {
    pub fn new(client: Client, settings: Settings, metrics: Arc<Metrics>) -> Self {
        Self {
            client,
            settings,
            metrics,
            patches: Arc::default(),
        }
    }

    /// Plans every configured target. The whole request is refused only when it is malformed as a whole (no
    /// targets, a malformed receiver) or a filter does not compile (400, as Flux answers 500 before any
    /// resource); a target that is malformed, of a kind outside the allow-list or in another namespace is
    /// refused alone, before any API call for it, and the others go on, as Flux goes on past a failing
    /// resource.
    fn plan(&self, request: &AttestedRequest) -> Result<Vec<Step>> {
        if request.targets.is_empty() {
            return Err(Error::InvalidTarget("no targets".into()));
        }
        if !request.receiver.is_valid() {
            return Err(Error::MalformedRequest(
                "receiver namespace and name must be Kubernetes names".into(),
            ));
        }
        let receiver = format!("{}/{}", request.receiver.namespace, request.receiver.name);
        let resource_filter = compile_filter("resourceFilter", request.resource_filter.as_deref())?;
        let mut steps = Vec::with_capacity(request.targets.len());
        for (index, target) in request.targets.iter().enumerate() {
            let own = compile_filter(
                &format!("targets[{index}].filter"),
                target.filter.as_deref(),
            )?;
            let filters = resource_filter.iter().chain(&own).cloned().collect();
            let step = self
                .plan_target(request, index, target, filters, &receiver)
                .unwrap_or_else(|(status, detail)| {
                    tracing::warn!(
                        receiver = %receiver,
                        target = index,
                        status = status.code(),
                        detail = %detail,
                        "target refused"
                    );
                    Step::Refused(refused_result(request, target, status, detail))
                });
            steps.push(step);
        }
        Ok(steps)
    }

    /// One target checked and resolved, or why it is refused (its status, and the detail for the log).
    fn plan_target(
        &self,
        request: &AttestedRequest,
        index: usize,
        target: &Target,
        filters: Vec<Arc<Expression>>,
        receiver: &str,
    ) -> std::result::Result<Step, (TargetStatus, String)> {
        target.validate().map_err(|e| {
            let detail = format!("targets[{index}].{}: {e}", e.field());
            (TargetStatus::Invalid, detail)
        })?;
        let resolved = resolve(target.api_version.as_deref(), &target.kind).ok_or_else(|| {
            let why = kinds::refusal(target.api_version.as_deref(), &target.kind);
            (
                TargetStatus::KindNotAllowed,
                format!("targets[{index}].kind: {why}"),
            )
        })?;
        let receiver_ns = &request.receiver.namespace;
        let namespace = target_namespace(request, target);
        if &namespace != receiver_ns && !self.settings.allow_cross_namespace {
            let detail = format!(
                "targets[{index}]: {namespace}/{} is outside the receiver's namespace (see --allow-cross-namespace)",
                target.name
            );
            return Err((TargetStatus::CrossNamespace, detail));
        }
        let resource = kinds::api_resource(&resolved);
        Ok(Step::Planned(Planned {
            api: Api::namespaced_with(self.client.clone(), &namespace, &resource),
            resource,
            resolved,
            namespace,
            target: target.clone(),
            receiver: receiver.to_string(),
            filters,
        }))
    }

    /// Validates, expands wildcards, patches every object and reports each outcome.
    pub async fn reconcile(&self, request: &AttestedRequest) -> Result<Summary> {
        let steps = self.plan(request)?;
        // Flux's `req`: the payload fields the filter forwarded (only those the filters read).
        let empty = serde_json::Value::Object(Default::default());
        let payload = hookgate_cel::from_json(request.payload.as_ref().unwrap_or(&empty));
        let planned: Vec<&Planned> = steps
            .iter()
            .filter_map(|step| match step {
                Step::Planned(planned) => Some(planned),
                Step::Refused(_) => None,
            })
            .collect();
        let mut applied = self.apply(&planned, &payload).await.into_iter();
        let results: Vec<TargetResult> = steps
            .into_iter()
            .filter_map(|step| match step {
                Step::Planned(_) => applied.next(),
                Step::Refused(result) => Some(result),
            })
            .collect();
        for r in &results {
            if r.status == TargetStatus::NoMatches {
                self.metrics.annotation(&r.kind, r.status.code());
            }
            for outcome in &r.outcomes {
                self.metrics.annotation(&r.kind, outcome.code());
            }
        }
        let count = |pred: fn(TargetStatus) -> bool| {
            results
                .iter()
                .flat_map(|r| &r.outcomes)
                .filter(|s| pred(**s))
                .count()
        };
        Ok(Summary {
            receiver: format!("{}/{}", request.receiver.namespace, request.receiver.name),
            delivery_id: request.delivery_id.clone(),
            annotated: count(|s| s == TargetStatus::Annotated),
            failed: count(TargetStatus::is_failure),
            targets: results,
        })
    }

    /// Expands wildcards, filters and patches the planned targets: one result each, in their order.
    async fn apply(&self, plan: &[&Planned], payload: &Value) -> Vec<TargetResult> {
        let deadline = Instant::now() + self.settings.deadline;
        // Expand wildcards first (in parallel), then patch everything (in parallel, bounded).
        // (Futures are collected first: a lazy `map` over borrowed items trips the compiler's
        // higher-ranked lifetime check once the handler future must be Send.)
        let expansions: Vec<_> = plan.iter().map(|p| self.expand(p, deadline)).collect();
        let expansions = stream::iter(expansions)
            .buffered(self.settings.max_concurrency.max(1))
            .collect::<Vec<_>>()
            .await;
        // Each configured target's object outcomes and earliest `requestedAt` written; `matched` once a
        // wildcard's list succeeded.
        let mut outcomes: Vec<Vec<TargetStatus>> = vec![Vec::new(); plan.len()];
        let mut requested_at: Vec<Option<String>> = vec![None; plan.len()];
        let mut matched: Vec<Option<usize>> = vec![None; plan.len()];
        let mut to_patch = Vec::new();
        let mut to_filter = Vec::new();
        for (index, (planned, expansion)) in plan.iter().zip(expansions).enumerate() {
            match expansion {
                Ok(candidates) => {
                    if planned.is_wildcard() {
                        matched[index] = Some(candidates.len());
                    }
                    for candidate in candidates {
                        if planned.filters.is_empty() {
                            to_patch.push((index, *planned, candidate.name));
                        } else {
                            to_filter.push((index, candidate));
                        }
                    }
                }
                Err(status) => outcomes[index].push(status),
            }
        }
        for ((index, name), verdict) in filter_off_workers(plan, to_filter, payload).await {
            match plan[index].filter_status(&name, verdict) {
                None => to_patch.push((index, plan[index], name)),
                Some(status) => outcomes[index].push(status),
            }
        }
        let patches: Vec<_> = to_patch
            .into_iter()
            .map(|(index, planned, name)| async move {
                (index, self.patch_and_report(planned, name, deadline).await)
            })
            .collect();
        let patched = stream::iter(patches)
            .buffer_unordered(self.settings.max_concurrency.max(1))
            .collect::<Vec<_>>()
            .await;
        for (index, result) in patched {
            match result {
                Ok(written) => {
                    outcomes[index].push(TargetStatus::Annotated);
                    let earliest = &mut requested_at[index];
                    if earliest.as_ref().is_none_or(|e| written < *e) {
                        *earliest = Some(written);
                    }
                }
                Err(status) => outcomes[index].push(status),
            }
        }
        plan.iter()
            .zip(outcomes)
            .zip(matched)
            .zip(requested_at)
            .map(|(((planned, outcomes), matched), requested_at)| {
                self.result(planned, outcomes, matched, requested_at)
            })
            .collect()
    }

    /// One configured target's line of the reply, from the outcomes of the objects it stands for.
    fn result(
        &self,
        planned: &Planned,
        outcomes: Vec<TargetStatus>,
        matched: Option<usize>,
        requested_at: Option<String>,
    ) -> TargetResult {
        let status = if matched == Some(0) {
            TargetStatus::NoMatches
        } else {
            outcomes
                .iter()
                .copied()
                .max()
                .unwrap_or(TargetStatus::Failed)
        };
        let mut counts = BTreeMap::new();
        if matched.is_some_and(|n| n > 0) {
            for outcome in &outcomes {
                *counts.entry(*outcome).or_default() += 1;
            }
        }
        TargetResult {
            api_version: planned.resource.api_version.clone(),
            kind: planned.resource.kind.clone(),
            namespace: planned.namespace.clone(),
            name: planned.target.name.clone(),
            match_labels: planned.target.match_labels.clone(),
            status,
            matched,
            counts,
            requested_at,
            detail: None,
            outcomes,
        }
    }

    /// The objects a target stands for: itself, or every object matching its labels (logged here, never
    /// replied); with their metadata where a filter reads it.
    async fn expand(
        &self,
        planned: &Planned,
        deadline: Instant,
    ) -> Result<Vec<Candidate>, TargetStatus> {
        if !planned.is_wildcard() {
            let name = planned.target.name.clone();
            if planned.filters.is_empty() {
                return Ok(vec![Candidate {
                    name,
                    metadata: None,
                }]);
            }
            // Listed by name rather than read: the controller's RBAC grants `list` and `patch` only. The name
            // passed `Target::validate` (an object name), so the selector says exactly "this name".
            let api = &planned.api;
            let params = ListParams::default().fields(&format!("metadata.name={name}"));
            return match retry::until(deadline, &API_RETRY, || api.list_metadata(&params)).await {
                Ok(list) => match list.items.into_iter().next() {
                    Some(object) => Ok(vec![Candidate {
                        name,
                        metadata: Some(object.metadata),
                    }]),
                    None => {
                        let status = TargetStatus::NotFound;
                        planned.log_failure(
                            &name,
                            status,
                            "no such object",
                            "reading a filtered target failed",
                        );
                        Err(status)
                    }
                },
                Err(error) => {
                    let (status, detail) = classify(error);
                    planned.log_failure(&name, status, &detail, "reading a filtered target failed");
                    Err(status)
                }
            };
        }
        // Keys and values passed `Target::validate` (Kubernetes' label syntax), so none holds `,`, `=` or
        // `!`: this selector says exactly "every label equals its value".
        let selector = planned
            .target
            .match_labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        let api = &planned.api;
        let params = ListParams::default().labels(&selector);
        match retry::until(deadline, &API_RETRY, || api.list_metadata(&params)).await {
            Ok(list) => {
                let candidates: Vec<Candidate> = list
                    .items
                    .into_iter()
                    .filter_map(|o| {
                        Some(Candidate {
                            name: o.metadata.name.clone()?,
                            metadata: Some(o.metadata),
                        })
                    })
                    .collect();
                let names: Vec<&str> = candidates.iter().map(|c| c.name.as_str()).collect();
                tracing::info!(
                    receiver = %planned.receiver,
                    kind = %planned.resource.kind,
                    namespace = %planned.namespace,
                    selector = %selector,
                    matched = names.len(),
                    names = ?names,
                    "wildcard target expanded"
                );
                Ok(candidates)
            }
            Err(error) => {
                let (status, detail) = classify(error);
                tracing::warn!(
                    receiver = %planned.receiver,
                    kind = %planned.resource.kind,
                    namespace = %planned.namespace,
                    selector = %selector,
                    status = status.code(),
                    detail = %detail,
                    "listing a wildcard target's matches failed"
                );
                Err(status)
            }
        }
    }

    /// The `requestedAt` written for the object, or its failure status (logged here).
    async fn patch_and_report(
        &self,
        planned: &Planned,
        name: String,
        deadline: Instant,
    ) -> std::result::Result<String, TargetStatus> {
        match self.patch(planned, name.clone(), deadline).await {
            Ok(written) => Ok(written),
            Err((status, detail)) => {
                planned.log_failure(&name, status, &detail, "patching a target failed");
                Err(status)
            }
        }
    }

    /// The result of the next patch of the object that starts after this call, shared with every request
    /// for the same object that arrives before it starts. This request's deadline bounds the wait.
    async fn patch(&self, planned: &Planned, name: String, deadline: Instant) -> PatchResult {
        let resource = &planned.resource;
        let key = (
            resource.group.clone(),
            resource.plural.clone(),
            planned.namespace.clone(),
            name.clone(),
        );
        let (api, resolved, metrics, kind) = (
            planned.api.clone(),
            planned.resolved.clone(),
            self.metrics.clone(),
            resource.kind.clone(),
        );
        let params = PatchParams {
            field_manager: Some(self.settings.field_manager.clone()),
            ..PatchParams::default()
        };
        let work = move || {
            async move {
                // Taken when the patch starts, so it is after every request that shares the patch arrived.
                let requested_at =
                    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
                let patch = Patch::Merge(kinds::patch(&resolved, &requested_at));
                let started = Instant::now();
                let outcome = retry::until(deadline, &API_RETRY, || {
                    api.patch_metadata(&name, &params, &patch)
                })
                .await;
                metrics
                    .patch_seconds
                    .observe(started.elapsed().as_secs_f64());
                let result = outcome.map(|_| requested_at).map_err(classify);
                let status = result
                    .as_ref()
                    .map_or_else(|(s, _)| *s, |_| TargetStatus::Annotated);
                metrics.patch(&kind, status.code());
                result
            }
            .boxed()
        };
        match tokio::time::timeout_at(deadline, self.patches.run(key, work)).await {
            Ok((Some(result), _)) => result,
            Ok((None, _)) => Err((TargetStatus::Failed, "the patch task failed".into())),
            Err(_) => Err((
                TargetStatus::Unavailable,
                "deadline exceeded waiting for a patch shared with other requests".into(),
            )),
        }
    }
}

/// Whether an error may go away by itself (API server restarting, overloaded, unreachable).
pub(crate) fn is_transient(error: &kube::Error) -> bool {
    match error {
        kube::Error::Api(status) => matches!(status.code, 429 | 500 | 502 | 503 | 504),
        kube::Error::HyperError(_) | kube::Error::Service(_) => true,
        _ => false,
    }
}

/// How calls to the API server are retried (patches, lists, dispatch records).
pub(crate) const API_RETRY: Policy<kube::Error> = Policy {
    first_backoff: Duration::from_millis(50),
    max_backoff: Duration::from_secs(1),
    is_transient,
    // A service error: transient, so a target it cuts short reports `unavailable`.
    deadline_exceeded: || {
        kube::Error::Service("deadline exceeded waiting for the API server".into())
    },
};

impl Planned {
    fn is_wildcard(&self) -> bool {
        self.target.name == "*"
    }

    /// Flux's `res` for `candidate`: the object's metadata as the API server serializes it.
    fn res(&self, candidate: &Candidate) -> Value {
        hookgate_cel::from_json(&serde_json::json!({
            "apiVersion": self.resource.api_version,
            "kind": self.resource.kind,
            "metadata": candidate.metadata,
        }))
    }

    /// Why object `name` is not patched, if its filters' verdict says so: false (`filtered`), or an
    /// error (`filter_error`, failing closed as Flux does).
    fn filter_status(&self, name: &str, verdict: FilterVerdict) -> Option<TargetStatus> {
        match verdict {
            Ok(true) => None,
            Ok(false) => {
                tracing::info!(
                    receiver = %self.receiver,
                    kind = %self.resource.kind,
                    namespace = %self.namespace,
                    name = %name,
                    "target filter false: not annotated"
                );
                Some(TargetStatus::Filtered)
            }
            Err(error) => {
                let status = TargetStatus::FilterError;
                self.log_failure(name, status, &error, "target filter failed");
                Some(status)
            }
        }
    }

    /// Logs what happened to object `name` of this target (API server details included: the log only).
    fn log_failure(&self, name: &str, status: TargetStatus, detail: &str, message: &str) {
        tracing::warn!(
            receiver = %self.receiver,
            kind = %self.resource.kind,
            namespace = %self.namespace,
            name = %name,
            status = status.code(),
            detail = %detail,
            "{message}"
        );
    }
}

/// Whether every filter of an object is true, or the first error (its message names kinds, never values).
type FilterVerdict = std::result::Result<bool, String>;

/// The filters' verdict for each object of `to_filter` (a configured target's index and the object), in
/// order. They run on the blocking pool: one evaluation may spend its whole step budget, and an async
/// worker held that long would stall every other request the process serves.
async fn filter_off_workers(
    plan: &[&Planned],
    to_filter: Vec<(usize, Candidate)>,
    payload: &Value,
) -> Vec<((usize, String), FilterVerdict)> {
    if to_filter.is_empty() {
        return Vec::new();
    }
    let work: Vec<_> = to_filter
        .iter()
        .map(|(index, candidate)| (plan[*index].filters.clone(), plan[*index].res(candidate)))
        .collect();
    let keys: Vec<(usize, String)> = to_filter
        .into_iter()
        .map(|(index, candidate)| (index, candidate.name))
        .collect();
    let req = payload.clone();
    let evaluated = tokio::task::spawn_blocking(move || {
        work.iter()
            .map(|(filters, res)| verdict(filters, res, &req))
            .collect::<Vec<_>>()
    })
    .await;
    let verdicts = evaluated
        .unwrap_or_else(|_| vec![Err("the filter evaluation task failed".to_string()); keys.len()]);
    keys.into_iter().zip(verdicts).collect()
}

/// `filters` (the request's `resourceFilter`, then the target's `filter`) on one object: false at the
/// first false, the first error's message.
fn verdict(filters: &[Arc<Expression>], res: &Value, req: &Value) -> FilterVerdict {
    for filter in filters {
        let variables = vec![("res", res.clone()), ("req", req.clone())];
        if !filter.evaluate(variables).map_err(|e| e.to_string())? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The target filter at `field` of a request, compiled with the edge filter's bounds; a refusal names the
/// field.
fn compile_filter(field: &str, source: Option<&str>) -> Result<Option<Arc<Expression>>> {
    source
        .map(|source| {
            Expression::compile(source, TARGET_VARIABLES)
                .map(Arc::new)
                .map_err(|e| Error::InvalidFilter(format!("{field}: {e}")))
        })
        .transpose()
}

/// The status code an API error means, and its details (API server message: ServiceAccount, groups) for
/// the controller's log only.
fn classify(error: kube::Error) -> (TargetStatus, String) {
    let status = match &error {
        kube::Error::Api(s) if s.code == 404 => TargetStatus::NotFound,
        kube::Error::Api(s) if s.code == 403 => TargetStatus::Forbidden,
        e if is_transient(e) => TargetStatus::Unavailable,
        _ => TargetStatus::Failed,
    };
    let reason = match &error {
        kube::Error::Api(s) if !s.message.is_empty() => s.message.clone(),
        other => other.to_string(),
    };
    (status, reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(statuses: &[TargetStatus]) -> Summary {
        Summary {
            receiver: "ns/r".into(),
            delivery_id: None,
            annotated: 0,
            failed: 0,
            targets: statuses
                .iter()
                .map(|s| TargetResult {
                    api_version: "v".into(),
                    kind: "K".into(),
                    namespace: "ns".into(),
                    name: "n".into(),
                    match_labels: BTreeMap::new(),
                    status: *s,
                    matched: None,
                    counts: BTreeMap::new(),
                    requested_at: None,
                    detail: None,
                    outcomes: vec![*s],
                })
                .collect(),
        }
    }

    #[test]
    fn provider_visible_outcome() {
        use TargetStatus::*;
        let cases = [
            (
                "nothing failed",
                &[Annotated, NoMatches][..],
                Outcome::Ok,
                StatusCode::OK,
                "ok",
            ),
            (
                "objects filtered out",
                &[Filtered, Annotated],
                Outcome::Ok,
                StatusCode::OK,
                "ok",
            ),
            (
                "a filter failed for one object (fails closed, as Flux's 500)",
                &[Annotated, FilterError],
                Outcome::Failed,
                StatusCode::INTERNAL_SERVER_ERROR,
                "failed",
            ),
            (
                "every object missing",
                &[NotFound, NotFound],
                Outcome::NotFound,
                StatusCode::NOT_FOUND,
                "not_found",
            ),
            (
                "one object missing",
                &[Annotated, NotFound],
                Outcome::Failed,
                StatusCode::INTERNAL_SERVER_ERROR,
                "failed",
            ),
            (
                "one object forbidden",
                &[Annotated, Forbidden],
                Outcome::Failed,
                StatusCode::INTERNAL_SERVER_ERROR,
                "failed",
            ),
            (
                "the API server unavailable for one",
                &[Failed, Unavailable],
                Outcome::Unavailable,
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
            ),
        ];
        for (case, statuses, outcome, status, label) in cases {
            let got = summary(statuses).outcome();
            assert_eq!(got, outcome, "{case}");
            assert_eq!(
                (got.status(), got.metric_label()),
                (status, label),
                "{case}"
            );
        }
    }

    fn api_error(code: u16, message: &str) -> kube::Error {
        kube::Error::Api(Box::new(kube::core::Status {
            code,
            message: message.into(),
            ..Default::default()
        }))
    }

    #[test]
    fn api_errors_classified() {
        // (case, error, transient, status)
        let cases = [
            ("503", api_error(503, ""), true, TargetStatus::Unavailable),
            ("429", api_error(429, ""), true, TargetStatus::Unavailable),
            ("404", api_error(404, ""), false, TargetStatus::NotFound),
            ("403", api_error(403, ""), false, TargetStatus::Forbidden),
            ("422", api_error(422, ""), false, TargetStatus::Failed),
            (
                "the deadline",
                (API_RETRY.deadline_exceeded)(),
                true,
                TargetStatus::Unavailable,
            ),
        ];
        for (case, error, transient, status) in cases {
            assert_eq!(is_transient(&error), transient, "{case}");
            assert_eq!(classify(error).0, status, "{case}");
        }
    }

    /// The API server's message names the ServiceAccount: the log keeps it, the reply carries the code.
    #[test]
    fn api_messages_reach_the_log_not_the_reply() {
        let denied = api_error(
            403,
            "User \"system:serviceaccount:hookgate-system:hookgate-controller\" cannot list",
        );
        let (status, detail) = classify(denied);
        assert!(detail.contains("system:serviceaccount"), "the log keeps it");
        assert_eq!(serde_json::to_value(status).unwrap(), "forbidden");
    }

    #[test]
    fn status_codes_are_the_reply_and_the_metric_label() {
        use TargetStatus::*;
        let counts = BTreeMap::from([(Annotated, 1), (NotFound, 2)]);
        assert_eq!(
            serde_json::to_value(&counts).unwrap(),
            serde_json::json!({"annotated": 1, "not_found": 2})
        );
        let codes = [
            (Annotated, "annotated"),
            (Filtered, "filtered"),
            (NoMatches, "no_matches"),
            (FilterError, "filter_error"),
            (Invalid, "invalid"),
            (KindNotAllowed, "kind_not_allowed"),
            (CrossNamespace, "cross_namespace"),
            (NotFound, "not_found"),
            (Failed, "failed"),
            (Forbidden, "forbidden"),
            (Unavailable, "unavailable"),
        ];
        for (status, code) in codes {
            assert_eq!(status.code(), code);
            assert_eq!(serde_json::to_value(status).unwrap(), code);
        }
    }
}
