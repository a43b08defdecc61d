//! Any bytes as the plugin configuration: parsing must answer Ok or a named error, never panic.
#![no_main]

use hookgate_filter::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let env = |name: &str| (name.len() % 3 != 0).then(|| format!("value-of-{name}-0123456789"));
    if let Err(error) = Config::parse(data, &env) {
        assert!(!error.field.is_empty());
    }
});
