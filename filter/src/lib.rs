//! hookgate's edge filter.
//!
//! Everything that decides (configuration, provider verification, routing, building the attested request)
//! is plain Rust in this library, tested on the host; the contract with the controller is the
//! `hookgate-protocol` crate. The proxy-wasm glue in `glue` only moves bytes between Envoy and
//! [`pipeline::Filter`], which decides, and [`forward::Forward`], which is the request it lets through.
#![forbid(unsafe_code)]

pub mod cel;
pub mod channel;
pub mod config;
pub mod delivery;
pub mod dispatch;
pub mod forward;
pub mod glob;
pub mod id_token;
pub mod label;
pub mod nonce;
pub mod outcome;
pub mod pipeline;
pub mod providers;
pub mod relay;

#[cfg(target_arch = "wasm32")]
mod glue;

pub use config::{Config, ConfigError};
pub use delivery::{Delivery, Headers};
pub use outcome::{Outcome, Rejection};
pub use pipeline::{Filter, ReceiverId};
