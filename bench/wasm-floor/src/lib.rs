//! The edge benchmark's floor: a minimal proxy-wasm filter doing only what any Wasm verifier of a body
//! HMAC must do. Not part of hookgate; `bench/edge_bench.py` builds it and compares hookgate against it.
//!
//! Its plugin configuration is the mode:
//! - `buffer`: hold the headers until the end of the stream (Envoy buffers the body), then continue;
//! - `hmac`: the same, plus read the whole body into the module and compute one HMAC-SHA256 over it;
//! - `hmac-chunks`: the same HMAC, computed as the body arrives: each callback reads only the new bytes
//!   and feeds them to the hash (Envoy still buffers the whole body for forwarding).
#![forbid(unsafe_code)]

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The key of the floor's one HMAC: fixed, as its result is never compared with anything.
pub const KEY: &[u8] = b"bench-floor-key-0123456789abcdef";

/// What the floor does with each request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Buffer,
    Hmac,
    HmacChunks,
}

impl Mode {
    /// Reads the plugin configuration, `buffer` or `hmac` (surrounding whitespace allowed).
    pub fn parse(configuration: &[u8]) -> Option<Self> {
        match std::str::from_utf8(configuration).ok()?.trim() {
            "buffer" => Some(Self::Buffer),
            "hmac" => Some(Self::Hmac),
            "hmac-chunks" => Some(Self::HmacChunks),
            _ => None,
        }
    }
}

/// An HMAC-SHA256 under `key`, fed in parts.
pub fn hmac_sha256_state(key: &[u8]) -> Option<Hmac<Sha256>> {
    // HMAC takes keys of any length: never `None`.
    <Hmac<Sha256> as Mac>::new_from_slice(key).ok()
}

/// HMAC-SHA256 of `body` under `key`.
pub fn hmac_sha256(key: &[u8], body: &[u8]) -> [u8; 32] {
    match hmac_sha256_state(key) {
        Some(mut mac) => {
            mac.update(body);
            mac.finalize().into_bytes().into()
        }
        None => [0; 32],
    }
}

#[cfg(target_arch = "wasm32")]
mod glue {
    use super::{hmac_sha256, hmac_sha256_state, Mode, KEY};
    use hmac::{Hmac, Mac};
    use proxy_wasm::traits::{Context, HttpContext, RootContext};
    use proxy_wasm::types::{Action, ContextType, LogLevel};
    use sha2::Sha256;

    proxy_wasm::main! {{
        proxy_wasm::set_log_level(LogLevel::Warn);
        proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(FloorRoot(Mode::Buffer)) });
    }}

    struct FloorRoot(Mode);

    impl Context for FloorRoot {}

    impl RootContext for FloorRoot {
        fn on_configure(&mut self, _size: usize) -> bool {
            match Mode::parse(&self.get_plugin_configuration().unwrap_or_default()) {
                Some(mode) => {
                    self.0 = mode;
                    true
                }
                None => {
                    log::error!("bench floor: configuration must be `buffer` or `hmac`");
                    false
                }
            }
        }

        fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
            Some(Box::new(FloorHttp {
                mode: self.0,
                hashed: 0,
                mac: hmac_sha256_state(KEY),
            }))
        }

        fn get_type(&self) -> Option<ContextType> {
            Some(ContextType::HttpContext)
        }
    }

    struct FloorHttp {
        mode: Mode,
        /// `hmac-chunks`: how many body bytes the hash has been fed.
        hashed: usize,
        mac: Option<Hmac<Sha256>>,
    }

    impl Context for FloorHttp {}

    impl HttpContext for FloorHttp {
        fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
            if end_of_stream {
                Action::Continue
            } else {
                // Hold the headers as a verifier must (allow_on_headers_stop_iteration).
                Action::Pause
            }
        }

        fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
            if self.mode == Mode::HmacChunks && body_size > self.hashed {
                let chunk = self
                    .get_http_request_body(self.hashed, body_size - self.hashed)
                    .unwrap_or_default();
                self.hashed = body_size;
                if let Some(mac) = &mut self.mac {
                    mac.update(&chunk);
                }
            }
            if !end_of_stream {
                // StopIterationAndBuffer: Envoy keeps the body until the end of the stream.
                return Action::Pause;
            }
            if self.mode == Mode::HmacChunks {
                if let Some(mac) = self.mac.take() {
                    std::hint::black_box(mac.finalize().into_bytes());
                }
            }
            if self.mode == Mode::Hmac {
                let body = self.get_http_request_body(0, body_size).unwrap_or_default();
                // Kept observable so the optimizer cannot drop the hash.
                std::hint::black_box(hmac_sha256(KEY, &body));
            }
            Action::Continue
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_from_the_plugin_configuration() {
        assert_eq!(Mode::parse(b"buffer"), Some(Mode::Buffer));
        assert_eq!(Mode::parse(b" hmac\n"), Some(Mode::Hmac));
        assert_eq!(Mode::parse(b"hmac-chunks"), Some(Mode::HmacChunks));
        assert_eq!(Mode::parse(b"HMAC"), None);
        assert_eq!(Mode::parse(b""), None);
        assert_eq!(Mode::parse(b"\xff"), None);
    }

    /// RFC 4231, test case 2.
    #[test]
    fn hmac_sha256_known_answer() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_ne!(hmac_sha256(KEY, b"a"), hmac_sha256(KEY, b"b"));
    }
}
