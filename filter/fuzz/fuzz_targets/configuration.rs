//! Any bytes as the plugin configuration (receivers, or the bootstrap when it has a `controller`), as a
//! document the controller delivers, and as a bootstrap: parsing must answer Ok or a named error, never
//! panic.
#![no_main]

use hookgate_filter::channel::Bootstrap;
use hookgate_filter::{Config, PluginConfig};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let env = |name: &str| (name.len() % 3 != 0).then(|| format!("value-of-{name}-0123456789"));
    // `PluginConfig::parse` is `Config::parse` for every input without `controller`.
    if let Err(error) = PluginConfig::parse(data, &env) {
        assert!(!error.field.is_empty());
    }
    if let Err(error) = Config::parse_delivered(data) {
        assert!(!error.field.is_empty());
    }
    // The bootstrap's reader on every input, not only those the fuzzer found `controller` in.
    if let Err(error) = Bootstrap::parse(data) {
        assert!(!error.field.is_empty());
    }
});
