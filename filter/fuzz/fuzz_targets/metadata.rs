//! Any bytes as the serialized dynamic metadata Envoy hands the filter (`envoy.config.core.v3.Metadata`):
//! reading the JWT filter's verified claims answers some claims or none, never a panic (a panic kills the
//! Wasm VM), whatever the varints, lengths and nesting say.
#![no_main]

use hookgate_filter::id_token::metadata::verified_claims;
use hookgate_filter::id_token::JWT_AUTHN_METADATA;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = verified_claims(data, JWT_AUTHN_METADATA, "google");
    // Also with the namespace and provider the input names itself, so nested entries are reached.
    let _ = verified_claims(data, "", "");
});
