//! The proxies that ask for their configuration: per proxy name (the `x-hookgate-proxy` of its latest
//! authenticated request) the configuration it said it serves and when. What a receiver's
//! `status.proxies` counts.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hookgate_protocol::channel::Known;

use super::crd::Proxies;

/// A proxy counts as seen for this long after its latest request (a long poll lasts 20 s).
pub const SEEN_WINDOW: Duration = Duration::from_secs(60);
/// A proxy not seen for this long is forgotten.
const FORGET_AFTER: Duration = Duration::from_secs(600);
/// At most this many proxies are remembered (only callers holding a channel key are recorded).
const CAPACITY: usize = 10_000;

#[derive(Default)]
pub struct ProxyBook {
    proxies: Mutex<HashMap<String, (Known, Instant)>>,
}

impl ProxyBook {
    /// Records that `proxy` serves `known`, at `now`.
    pub fn record(&self, proxy: &str, known: &Known, now: Instant) {
        let mut proxies = self.proxies.lock().unwrap_or_else(|e| e.into_inner());
        if proxies.len() >= CAPACITY && !proxies.contains_key(proxy) {
            proxies.retain(|_, (_, at)| now.saturating_duration_since(*at) < FORGET_AFTER);
            if proxies.len() >= CAPACITY {
                return;
            }
        }
        proxies.insert(proxy.to_string(), (known.clone(), now));
    }

    /// What the proxies seen within [`SEEN_WINDOW`] of `now` serve; forgets the ones long gone.
    pub fn recent(&self, now: Instant) -> Vec<Known> {
        let mut proxies = self.proxies.lock().unwrap_or_else(|e| e.into_inner());
        proxies.retain(|_, (_, at)| now.saturating_duration_since(*at) < FORGET_AFTER);
        proxies
            .values()
            .filter(|(_, at)| now.saturating_duration_since(*at) <= SEEN_WINDOW)
            .map(|(known, _)| known.clone())
            .collect()
    }
}

/// Of the `recent` proxies, those serving a receiver whose current form is in the configuration since
/// generation `since`: a proxy serving the current configuration (`digest`), or one of a generation not
/// older than `since` (another replica numbers generations by its own clock, so the digest alone could
/// miss it).
pub fn counts(recent: &[Known], since: u64, digest: &str) -> Proxies {
    let serving = recent
        .iter()
        .filter(|known| known.digest.as_deref() == Some(digest) || known.generation >= since)
        .count();
    Proxies {
        serving: u32::try_from(serving).unwrap_or(u32::MAX),
        seen: u32::try_from(recent.len()).unwrap_or(u32::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(generation: u64, digest: &str) -> Known {
        Known {
            generation,
            digest: Some(digest.into()),
        }
    }

    #[test]
    fn a_proxy_counts_while_seen_and_serves_from_the_generation_its_receiver_appeared() {
        let book = ProxyBook::default();
        let start = Instant::now();
        book.record("envoy-a", &known(100, "aaaaaaaaaaaaaaaa"), start);
        book.record("envoy-b", &known(200, "bbbbbbbbbbbbbbbb"), start);
        book.record("envoy-c", &Known::default(), start);
        // The latest request of a proxy is what counts.
        book.record("envoy-a", &known(150, "cccccccccccccccc"), start);
        let recent = book.recent(start + Duration::from_secs(10));
        assert_eq!(recent.len(), 3);
        let cases = [
            ("in every configuration", 0, "dddddddddddddddd", 3),
            ("since 150", 150, "dddddddddddddddd", 2),
            (
                "since 200, a's digest is current",
                200,
                "cccccccccccccccc",
                2,
            ),
            ("since 300", 300, "dddddddddddddddd", 0),
        ];
        for (case, since, digest, serving) in cases {
            assert_eq!(
                counts(&recent, since, digest),
                Proxies { serving, seen: 3 },
                "{case}"
            );
        }
        assert!(book
            .recent(start + SEEN_WINDOW + Duration::from_secs(1))
            .is_empty());
        assert_eq!(book.proxies.lock().unwrap().len(), 3, "remembered a while");
        book.recent(start + FORGET_AFTER);
        assert!(book.proxies.lock().unwrap().is_empty(), "then forgotten");
    }

    #[test]
    fn the_book_is_bounded() {
        let book = ProxyBook::default();
        let now = Instant::now();
        for n in 0..CAPACITY + 10 {
            book.record(&format!("envoy-{n}"), &Known::default(), now);
        }
        assert_eq!(book.proxies.lock().unwrap().len(), CAPACITY);
        book.record("envoy-0", &known(1, "aaaaaaaaaaaaaaaa"), now);
        assert_eq!(
            book.recent(now)
                .iter()
                .filter(|k| k.generation == 1)
                .count(),
            1
        );
    }
}
