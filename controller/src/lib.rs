//! hookgate's controller: verifies attested reconcile requests from the edge filter and sets the reconcile
//! annotation on Flux and Argo CD objects. Also the `hookgate` command-line tool's subcommands.
#![forbid(unsafe_code)]

pub mod cli;
pub mod dispatch;
pub mod error;
pub mod kinds;
pub mod metrics;
pub mod reconcile;
pub mod replay;
pub mod server;

pub use error::{Error, Result};
