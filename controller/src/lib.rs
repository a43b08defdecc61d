//! hookgate's controller: verifies attested requests from the edge filter and sets the reconcile
//! annotation on Flux and Argo CD objects, or dispatches a rollback. It depends on the filter's contract
//! (`hookgate-protocol`) only; the `hookgate` binary (crate `hookgate-cli`) runs it as `hookgate serve`.
#![forbid(unsafe_code)]

pub mod coalesce;
pub mod dispatch;
pub mod error;
pub mod keys;
pub mod kinds;
pub mod metrics;
pub mod receivers;
pub mod reconcile;
pub mod replay;
pub mod retry;
pub mod serve;
pub mod server;

pub use error::{Error, Result};
