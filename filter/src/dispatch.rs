//! The `dispatch` action's edge half: a receiver's dispatch settings, and the reading of an Argo CD
//! "degraded" notification into the [`DispatchRequest`] the controller sends to GitHub. A bad notification
//! is refused with 400, and one naming an application the receiver may not dispatch for with 403, before
//! forwarding.

use std::fmt;

use hookgate_protocol::dispatch::{
    is_event_type, is_repository, DispatchRequest, DEFAULT_EVENT_TYPE,
};
use hookgate_protocol::kubernetes::is_dns_subdomain;
use serde::Deserialize;
use serde_json::Value;

use crate::outcome::Rejection;

/// The receiver's dispatch settings, from the filter configuration.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DispatchConfig {
    pub repository: String,
    #[serde(default)]
    pub event_type: Option<String>,
    /// The application when the notification does not name one.
    #[serde(default)]
    pub application: Option<String>,
    /// The applications this receiver may dispatch for. Default: exactly `application` if set, else the
    /// receiver's name. Whoever holds the receiver's token can name an application in the payload; only
    /// these are dispatched.
    #[serde(default)]
    pub applications: Option<Vec<String>>,
}

/// Why a notification is not dispatched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Not the shape a rollback workflow can use safely (400).
    Malformed(&'static str),
    /// A well-formed notification for an application outside the receiver's `applications` (403).
    ApplicationNotAllowed,
    /// A notification naming another event type than the receiver's (403): the event type picks the
    /// workflow, and whoever holds the token must not pick it.
    EventTypeNotAllowed,
}

impl Refusal {
    pub fn rejection(self) -> Rejection {
        match self {
            Self::Malformed(_) => Rejection::MalformedPayload,
            Self::ApplicationNotAllowed => Rejection::ApplicationNotAllowed,
            Self::EventTypeNotAllowed => Rejection::EventTypeNotAllowed,
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed(reason) => f.write_str(reason),
            Self::ApplicationNotAllowed => {
                f.write_str("the application is not one this receiver may dispatch for")
            }
            Self::EventTypeNotAllowed => {
                f.write_str("the event type is not the one this receiver dispatches")
            }
        }
    }
}

impl DispatchConfig {
    pub fn validate(&self) -> Result<(), &'static str> {
        if !is_repository(&self.repository) {
            return Err("repository must be owner/name");
        }
        if self
            .event_type
            .as_deref()
            .is_some_and(|e| !is_event_type(e))
        {
            return Err("eventType must be 1-100 characters of letters, digits, '.', '_' or '-'");
        }
        if self
            .application
            .as_deref()
            .is_some_and(|a| !is_dns_subdomain(a))
        {
            return Err("application must be a Kubernetes object name");
        }
        if let Some(applications) = &self.applications {
            if applications.is_empty() {
                return Err("applications must list at least one application");
            }
            if !applications.iter().all(|a| is_dns_subdomain(a)) {
                return Err("applications must be Kubernetes object names");
            }
            if self
                .application
                .as_ref()
                .is_some_and(|a| !applications.contains(a))
            {
                return Err("application must be one of applications");
            }
        }
        Ok(())
    }

    /// Whether this receiver (named `receiver_name`) may dispatch for `application`.
    pub fn allows(&self, application: &str, receiver_name: &str) -> bool {
        match (&self.applications, &self.application) {
            (Some(applications), _) => applications.iter().any(|a| a == application),
            (None, Some(configured)) => configured == application,
            (None, None) => receiver_name == application,
        }
    }

    /// Reads an Argo CD notification of the shape existing setups send,
    /// `{"event_type": ..., "client_payload": {"failed_revision": ..., "healthy_revision": ...,
    /// "application"?: ...}}`, into a dispatch. The event type is the configured one (the payload's is
    /// ignored), else `argo-degraded`, which a payload may only repeat (it picks the workflow); the
    /// application falls back to the configured one, then to `receiver_name`, and must be one the
    /// receiver may dispatch for ([`DispatchConfig::allows`]).
    pub fn request_from(
        &self,
        body: &[u8],
        receiver_name: &str,
    ) -> Result<DispatchRequest, Refusal> {
        let payload: Value = serde_json::from_slice(body)
            .map_err(|_| Refusal::Malformed("notification is not JSON"))?;
        let text = |pointer: &str| {
            payload
                .pointer(pointer)
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let event_type = match &self.event_type {
            Some(configured) => configured.clone(),
            None => match text("/event_type") {
                Some(named) if named != DEFAULT_EVENT_TYPE => {
                    return Err(Refusal::EventTypeNotAllowed)
                }
                _ => DEFAULT_EVENT_TYPE.to_string(),
            },
        };
        let request = DispatchRequest {
            repository: self.repository.clone(),
            event_type,
            application: text("/client_payload/application")
                .or_else(|| self.application.clone())
                .unwrap_or_else(|| receiver_name.to_string()),
            failed_revision: text("/client_payload/failed_revision").ok_or(Refusal::Malformed(
                "client_payload.failed_revision is missing",
            ))?,
            healthy_revision: text("/client_payload/healthy_revision").ok_or(
                Refusal::Malformed("client_payload.healthy_revision is missing"),
            )?,
        };
        request.validate().map_err(Refusal::Malformed)?;
        if !self.allows(&request.application, receiver_name) {
            return Err(Refusal::ApplicationNotAllowed);
        }
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config() -> DispatchConfig {
        DispatchConfig {
            repository: "example/gitops".into(),
            event_type: None,
            application: None,
            applications: None,
        }
    }

    #[test]
    fn reads_the_shape_existing_setups_send() {
        let body = br#"{"event_type":"rollback","client_payload":{"failed_revision":"3f786850e387550fdab836ed7e6dc881de23001b","healthy_revision":"aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d"}}"#;
        let rollback = DispatchConfig {
            event_type: Some("rollback".into()),
            ..config()
        };
        let request = rollback.request_from(body, "guestbook").unwrap();
        assert_eq!(request.event_type, "rollback");
        assert_eq!(request.application, "guestbook");
        let configured = DispatchConfig {
            event_type: Some("argo-degraded".into()),
            application: Some("shop".into()),
            ..config()
        };
        let request = configured.request_from(body, "receiver").unwrap();
        assert_eq!(
            (request.event_type.as_str(), request.application.as_str()),
            ("argo-degraded", "shop")
        );
        let named = br#"{"client_payload":{"application":"cart","failed_revision":"abc1234","healthy_revision":"def5678"}}"#;
        let listed = DispatchConfig {
            applications: Some(vec!["cart".into()]),
            ..config()
        };
        let request = listed.request_from(named, "receiver").unwrap();
        assert_eq!(
            (request.event_type.as_str(), request.application.as_str()),
            (DEFAULT_EVENT_TYPE, "cart")
        );
    }

    /// A notification is dispatched only for an application the receiver lists: `applications`, else
    /// exactly `application`, else the receiver's name. The payload names one or the default applies.
    /// An Argo CD notification naming the event type and the application where given.
    fn notification(event_type: Option<&str>, application: Option<&str>) -> String {
        let mut payload =
            json!({"client_payload": {"failed_revision": "abc1234", "healthy_revision": "b2"}});
        if let Some(event_type) = event_type {
            payload["event_type"] = event_type.into();
        }
        if let Some(application) = application {
            payload["client_payload"]["application"] = application.into();
        }
        payload.to_string()
    }

    #[test]
    fn only_the_applications_a_receiver_lists_are_dispatched() {
        const TWO: Option<&[&str]> = Some(&["cart", "shop"]);
        const CART: Option<&[&str]> = Some(&["cart"]);
        let denied = Err(Refusal::ApplicationNotAllowed);
        let malformed = Err(Refusal::Malformed(
            "application must be a Kubernetes object name",
        ));
        // (case, dispatch.application, dispatch.applications, application in the payload, outcome) for a
        // receiver named "guestbook".
        #[rustfmt::skip]
        let cases = [
            ("nothing set, none named",               None,         None, None,                 Ok("guestbook")),
            ("nothing set, the receiver named",       None,         None, Some("guestbook"),    Ok("guestbook")),
            ("nothing set, another named",            None,         None, Some("billing"),      denied),
            ("nothing set, the name extended",        None,         None, Some("guestbook-eu"), denied),
            ("application, none named",               Some("shop"), None, None,                 Ok("shop")),
            ("application, it named",                 Some("shop"), None, Some("shop"),         Ok("shop")),
            ("application, the receiver named",       Some("shop"), None, Some("guestbook"),    denied),
            ("application, another named",            Some("shop"), None, Some("billing"),      denied),
            ("list, a listed one named",              None,         TWO,  Some("shop"),         Ok("shop")),
            ("list, an unlisted one named",           None,         TWO,  Some("billing"),      denied),
            ("list, a prefix of a listed one",        None,         CART, Some("car"),          denied),
            ("list without the receiver, none named", None,         CART, None,                 denied),
            ("list and application, none named",      Some("cart"), TWO,  None,                 Ok("cart")),
            ("list and application, the other named", Some("cart"), TWO, Some("shop"),         Ok("shop")),
            ("list, a malformed name",                None,         CART, Some("Cart!"),        malformed),
        ];
        for (case, application, applications, named, expected) in cases {
            let config = DispatchConfig {
                application: application.map(str::to_owned),
                applications: applications.map(|a| a.iter().map(|a| a.to_string()).collect()),
                ..config()
            };
            assert_eq!(config.validate(), Ok(()), "{case}");
            let got = config.request_from(notification(None, named).as_bytes(), "guestbook");
            assert_eq!(
                got.map(|r| r.application),
                expected.map(str::to_owned),
                "{case}"
            );
        }
        assert_eq!(Refusal::ApplicationNotAllowed.rejection().status(), 403);
    }

    #[test]
    fn the_payload_never_picks_the_workflow() {
        let denied = Err(Refusal::EventTypeNotAllowed);
        // (case, dispatch.eventType, event_type in the payload, outcome)
        #[rustfmt::skip]
        let cases = [
            ("nothing set, none named",       None,             None,                  Ok("argo-degraded")),
            ("nothing set, the default named", None,            Some("argo-degraded"), Ok("argo-degraded")),
            ("nothing set, another named",    None,             Some("deploy-prod"),   denied),
            ("configured, none named",        Some("rollback"), None,                  Ok("rollback")),
            ("configured, it named",          Some("rollback"), Some("rollback"),      Ok("rollback")),
            ("configured, another named",     Some("rollback"), Some("deploy-prod"),   Ok("rollback")),
        ];
        for (case, configured, named, expected) in cases {
            let config = DispatchConfig {
                event_type: configured.map(str::to_owned),
                application: Some("shop".into()),
                ..config()
            };
            let got = config.request_from(notification(named, None).as_bytes(), "guestbook");
            assert_eq!(
                got.map(|r| r.event_type),
                expected.map(str::to_owned),
                "{case}"
            );
        }
        assert_eq!(Refusal::EventTypeNotAllowed.rejection().status(), 403);
    }

    #[test]
    fn the_applications_list_is_validated_at_configure_time() {
        let names = Err("applications must be Kubernetes object names");
        let unlisted = Err("application must be one of applications");
        type Case<'a> = (&'a str, Option<&'a str>, &'a [&'a str], Result<(), &'a str>);
        #[rustfmt::skip]
        let cases: [Case; 9] = [
            ("one name",               None,            &["guestbook"],            Ok(())),
            ("dots and dashes",        None,            &["shop-eu.prod", "cart"], Ok(())),
            ("the default among them", Some("cart"),    &["cart", "shop"],         Ok(())),
            ("empty",                  None,            &[],                       Err("applications must list at least one application")),
            ("an empty name",          None,            &["cart", ""],             names),
            ("upper case",             None,            &["Cart"],                 names),
            ("a wildcard",             None,            &["*"],                    names),
            ("a path",                 None,            &["argocd/cart"],          names),
            ("the default not listed", Some("billing"), &["cart"],                 unlisted),
        ];
        for (case, application, applications, expected) in cases {
            let config = DispatchConfig {
                application: application.map(str::to_owned),
                applications: Some(applications.iter().map(|a| a.to_string()).collect()),
                ..config()
            };
            assert_eq!(config.validate(), expected, "{case}");
        }
    }

    #[test]
    fn refuses_bad_notifications() {
        let c = config();
        assert!(c.request_from(b"not json", "r").is_err());
        assert!(c
            .request_from(br#"{"client_payload":{"healthy_revision":"abc1234"}}"#, "r")
            .is_err());
        assert!(c
            .request_from(
                br#"{"client_payload":{"failed_revision":"x y","healthy_revision":"abc1234"}}"#,
                "r"
            )
            .is_err());
        assert!(c.request_from(br#"{"event_type":"has space","client_payload":{"failed_revision":"a1","healthy_revision":"b2"}}"#, "r").is_err());
        let long = format!(
            r#"{{"event_type":"{}","client_payload":{{"failed_revision":"a1","healthy_revision":"b2"}}}}"#,
            "e".repeat(101)
        );
        assert!(c.request_from(long.as_bytes(), "r").is_err());
        assert!(DispatchConfig {
            repository: "no-slash".into(),
            ..config()
        }
        .validate()
        .is_err());
        assert!(DispatchConfig {
            repository: "a/b/c".into(),
            ..config()
        }
        .validate()
        .is_err());
    }
}
