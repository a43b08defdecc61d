//! Refuses an attested request the controller has already accepted.
//!
//! An attestation is valid for the tolerance window around its timestamp, so a captured filter→controller
//! request could be sent again within that window. The cache remembers every accepted signature (the
//! 32-byte MAC) until its timestamp leaves the window; after that the attestation check itself refuses it as
//! stale, so nothing older needs remembering. Memory is bounded twice: by the window, and by a hard
//! capacity. When the cache is full of entries still inside the window, a new request is refused
//! ([`Refusal::Full`]) rather than an old entry forgotten: forgetting would reopen exactly the replay this
//! guards against, while a refusal is answered 503 and the provider delivers again later.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};
use std::sync::Mutex;

/// An HMAC-SHA256 attestation signature.
pub type Mac = [u8; 32];

/// Default capacity: about 1,000 accepted requests a second sustained over a 60 s window, a few MiB.
pub const DEFAULT_CAPACITY: usize = 65_536;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// This signature was accepted before and its timestamp is still inside the window.
    Replayed,
    /// The cache holds `capacity` signatures, all still inside the window.
    Full,
}

pub struct ReplayCache {
    tolerance_secs: u64,
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    seen: HashSet<Mac>,
    /// The same entries by timestamp, oldest first, so expiry costs only what expires.
    by_time: BinaryHeap<Reverse<(u64, Mac)>>,
}

impl ReplayCache {
    pub fn new(tolerance_secs: u64, capacity: usize) -> Self {
        Self {
            tolerance_secs,
            capacity,
            inner: Mutex::default(),
        }
    }

    /// Records `mac` (whose attestation, stamped `timestamp`, has just verified at `now`) or refuses it.
    pub fn admit(&self, mac: Mac, timestamp: u64, now: u64) -> Result<(), Refusal> {
        // A poisoned lock only means another request panicked while holding it; the sets stay consistent
        // because every mutation below is completed before anything that could panic.
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.expire(now, self.tolerance_secs);
        if inner.seen.contains(&mac) {
            return Err(Refusal::Replayed);
        }
        if inner.seen.len() >= self.capacity {
            return Err(Refusal::Full);
        }
        inner.seen.insert(mac);
        inner.by_time.push(Reverse((timestamp, mac)));
        Ok(())
    }

    /// How many signatures are remembered.
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .seen
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Inner {
    /// Forgets every signature whose timestamp is outside the window at `now`: the attestation check
    /// refuses those as stale already.
    fn expire(&mut self, now: u64, tolerance_secs: u64) {
        while let Some(Reverse((timestamp, mac))) = self.by_time.peek().copied() {
            if timestamp.saturating_add(tolerance_secs) >= now {
                break;
            }
            self.by_time.pop();
            self.seen.remove(&mac);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: u64 = 1_700_000_000;

    fn mac(n: u32) -> Mac {
        let mut m = [0u8; 32];
        m[..4].copy_from_slice(&n.to_be_bytes());
        m
    }

    #[test]
    fn a_signature_is_refused_while_its_timestamp_is_inside_the_window() {
        let cache = ReplayCache::new(60, 16);
        assert_eq!(cache.admit(mac(1), T, T), Ok(()));
        assert_eq!(cache.admit(mac(1), T, T), Err(Refusal::Replayed));
        assert_eq!(cache.admit(mac(2), T, T), Ok(()), "another signature");
        // Still inside the window at its last second (the attestation check accepts |now - ts| <= 60).
        assert_eq!(cache.admit(mac(1), T, T + 60), Err(Refusal::Replayed));
        // A timestamp ahead of the controller's clock stays remembered until it is 60 s behind it.
        assert_eq!(cache.admit(mac(3), T + 60, T), Ok(()));
        assert_eq!(cache.admit(mac(3), T + 60, T + 120), Err(Refusal::Replayed));
    }

    #[test]
    fn entries_expire_once_their_timestamp_leaves_the_window() {
        let cache = ReplayCache::new(60, 16);
        for n in 0..10 {
            cache
                .admit(mac(n), T + u64::from(n), T + u64::from(n))
                .unwrap();
        }
        assert_eq!(cache.len(), 10);
        // At T + 61 only the entry stamped T is stale.
        cache.admit(mac(100), T + 61, T + 61).unwrap();
        assert_eq!(cache.len(), 10);
        // At T + 200 every earlier entry is stale: only the newcomer remains.
        cache.admit(mac(101), T + 200, T + 200).unwrap();
        assert_eq!(cache.len(), 1);
        // An expired signature is no longer remembered (the attestation check refuses it as stale).
        assert_eq!(cache.admit(mac(0), T, T + 200), Ok(()));
    }

    #[test]
    fn a_full_cache_refuses_rather_than_forgets() {
        let cache = ReplayCache::new(60, 4);
        for n in 0..4 {
            cache.admit(mac(n), T, T).unwrap();
        }
        assert_eq!(cache.admit(mac(4), T, T + 1), Err(Refusal::Full));
        assert_eq!(
            cache.admit(mac(0), T, T + 1),
            Err(Refusal::Replayed),
            "nothing was forgotten to make room"
        );
        assert_eq!(cache.len(), 4);
        // Once the window has passed, the entries expire and there is room again.
        assert_eq!(cache.admit(mac(4), T + 61, T + 61), Ok(()));
        assert_eq!(cache.len(), 1);
    }

    /// A flood of distinct signatures never grows the cache past its capacity.
    #[test]
    fn memory_is_bounded_by_the_capacity() {
        let cache = ReplayCache::new(60, 1000);
        let mut full = 0;
        for n in 0..10_000 {
            if cache.admit(mac(n), T, T) == Err(Refusal::Full) {
                full += 1;
            }
        }
        assert_eq!((cache.len(), full), (1000, 9000));
        let inner = cache.inner.lock().unwrap();
        assert_eq!(inner.by_time.len(), 1000);
    }
}
