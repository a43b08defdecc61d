//! The dispatch contract: what the controller needs to send a GitHub `repository_dispatch` for an Argo CD
//! "degraded" notification (the rollback), and the shape rules both ends check. The filter refuses a bad
//! notification before forwarding; the controller checks the shape again before calling GitHub.

use serde::{Deserialize, Serialize};

use crate::kubernetes::is_dns_subdomain;

/// GitHub's limit on `event_type`.
pub const MAX_EVENT_TYPE_LEN: usize = 100;
pub const DEFAULT_EVENT_TYPE: &str = "argo-degraded";

/// What the controller needs to dispatch, as forwarded in the attested request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DispatchRequest {
    /// `owner/repo`.
    pub repository: String,
    pub event_type: String,
    pub application: String,
    pub failed_revision: String,
    pub healthy_revision: String,
}

impl DispatchRequest {
    /// Every field in the shape GitHub and a rollback workflow can use safely.
    pub fn validate(&self) -> Result<(), &'static str> {
        if !is_repository(&self.repository) {
            return Err("repository must be owner/name");
        }
        if !is_event_type(&self.event_type) {
            return Err("event_type must be 1-100 characters of letters, digits, '.', '_' or '-'");
        }
        if !is_dns_subdomain(&self.application) {
            return Err("application must be a Kubernetes object name");
        }
        if !is_revision(&self.failed_revision) || !is_revision(&self.healthy_revision) {
            return Err("revisions must be Git object ids or refs");
        }
        Ok(())
    }
}

/// `owner/name` as GitHub spells repositories.
pub fn is_repository(s: &str) -> bool {
    let ok = |part: &str| {
        !part.is_empty()
            && part.len() <= 100
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    };
    matches!(s.split_once('/'), Some((owner, repo)) if ok(owner) && ok(repo) && repo != "." && repo != "..")
}

/// A `repository_dispatch` event type: the name a workflow's `on.repository_dispatch.types` lists.
pub fn is_event_type(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_EVENT_TYPE_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// A Git object id (hex) or a ref name as `git check-ref-format` would accept it, conservatively: letters,
/// digits and `._/-`, no `..`, no leading `-` or `/`, no trailing `/`, `.` or `.lock`, at most 255 bytes.
/// Nothing that could smuggle quoting, whitespace or options into a workflow's shell.
pub fn is_revision(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._/-".contains(&b))
        && !s.contains("..")
        && !s.contains("//")
        && !s.starts_with(['-', '/', '.'])
        && !s.ends_with(['/', '.'])
        && !s.ends_with(".lock")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revisions() {
        for ok in [
            "3f786850e387550fdab836ed7e6dc881de23001b",
            "3f78685",
            "refs/heads/main",
            "main",
            "v1.2.3",
            "release/2026.11",
        ] {
            assert!(is_revision(ok), "{ok}");
        }
        for bad in [
            "",
            "main; rm -rf /",
            "$(id)",
            "a b",
            "-x",
            "/main",
            "a..b",
            "main.lock",
            "refs/heads/",
            "a\nb",
            "`x`",
            "a//b",
        ] {
            assert!(!is_revision(bad), "{bad:?}");
        }
    }
}
