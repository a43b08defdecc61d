//! Any text as a receiver's `filter` and a target filter, evaluated over any JSON payload (and headers):
//! compiling answers Ok or a named error, evaluating answers true, false or an error, never a panic (a
//! panic kills the Wasm VM). The text is split at the first NUL: expression, then payload.
#![no_main]

use hookgate_filter::cel::{payload, target_filter_reads, EdgeFilter};
use hookgate_filter::Headers;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (source, body) = match data.iter().position(|b| *b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &b"{\"a\":[1,\"x\",{\"b\":null}],\"ref\":\"refs/heads/main\"}"[..]),
    };
    let Ok(source) = std::str::from_utf8(source) else { return };
    let _ = target_filter_reads(source);
    let Ok(payload) = payload(body) else { return };
    if let Ok(filter) = EdgeFilter::compile(source) {
        let headers = Headers::new([("x-github-event", "push"), ("content-type", "application/json")]);
        let _ = filter.accepts(Some("push"), &headers, &payload);
    }
});
