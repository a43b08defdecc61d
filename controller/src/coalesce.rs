//! Single flight per object: requests to reconcile the same object share patches.
//!
//! A reconcile request only needs *some* patch of its object that starts after the request arrived. So
//! for each object at most one patch runs and at most one waits: a caller that finds a patch waiting joins
//! it; otherwise it queues a new one, which starts once the running one (if any) has finished. Everyone
//! who joined a patch gets that patch's result. A patch that is already running is never joined: it may
//! have started before the caller arrived.
//!
//! Under a burst of deliveries for one object, the API server then sees at most two patches in a row
//! instead of one per delivery, and every caller's answer stays true: the patch it reports started after
//! it arrived, and a failing patch fails every caller that shared it.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use std::panic::AssertUnwindSafe;

use futures::future::BoxFuture;
use futures::FutureExt;
use tokio::sync::watch;

/// The work of one patch, supplied by the caller that queued it; the others' work is dropped unused.
type Work<T> = Box<dyn FnOnce() -> BoxFuture<'static, T> + Send>;

/// The patch waiting to start for one object.
struct Queued<T> {
    work: Work<T>,
    result: watch::Sender<Option<T>>,
}

/// One object with a patch running or waiting. The entry exists exactly while its driver task runs.
struct Slot<T> {
    queued: Option<Queued<T>>,
}

pub struct Coalescer<K, T> {
    slots: Mutex<HashMap<K, Slot<T>>>,
}

/// How a caller was served: by a patch it queued, or by one another caller had queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Served {
    Queued,
    Joined,
}

impl<K, T> Default for Coalescer<K, T> {
    fn default() -> Self {
        Self {
            slots: Mutex::new(HashMap::new()),
        }
    }
}

impl<K, T> Coalescer<K, T>
where
    K: Eq + Hash + Clone + Send + 'static,
    T: Clone + Send + Sync + 'static,
{
    /// The result of the next patch of `key` that starts after this call: `work` runs as that patch if no
    /// other caller has queued one yet. `None` if the patch was lost (its task panicked).
    pub async fn run<F>(self: &Arc<Self>, key: K, work: F) -> (Option<T>, Served)
    where
        F: FnOnce() -> BoxFuture<'static, T> + Send + 'static,
    {
        let (mut result, served) = {
            let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            match slots.get_mut(&key) {
                Some(Slot {
                    queued: Some(queued),
                }) => (queued.result.subscribe(), Served::Joined),
                slot => {
                    let (sender, receiver) = watch::channel(None);
                    let queued = Queued {
                        work: Box::new(work),
                        result: sender,
                    };
                    match slot {
                        // A patch is running: its driver starts this one next.
                        Some(slot) => slot.queued = Some(queued),
                        None => {
                            slots.insert(
                                key.clone(),
                                Slot {
                                    queued: Some(queued),
                                },
                            );
                            tokio::spawn(Arc::clone(self).drive(key));
                        }
                    }
                    (receiver, Served::Queued)
                }
            }
        };
        let outcome = result
            .wait_for(Option::is_some)
            .await
            .ok()
            .and_then(|value| value.clone());
        (outcome, served)
    }

    /// Runs the object's queued patches one after another until none is left, then forgets the object.
    async fn drive(self: Arc<Self>, key: K) {
        loop {
            let next = {
                let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
                let next = slots.get_mut(&key).and_then(|slot| slot.queued.take());
                if next.is_none() {
                    slots.remove(&key);
                }
                next
            };
            let Some(Queued { work, result }) = next else {
                return;
            };
            // From here on, callers queue the following patch rather than join this one. A panicking
            // patch drops `result` (its callers get `None`) and must not stop the patches queued after it.
            if let Ok(value) = AssertUnwindSafe(work()).catch_unwind().await {
                result.send_replace(Some(value));
            }
        }
    }

    /// Objects with a patch running or waiting.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.slots.lock().unwrap().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;
    use tokio::sync::Notify;

    /// Work that counts its runs, waits for `release`, and returns which run it was.
    fn work(
        runs: &Arc<AtomicUsize>,
        release: &Arc<Notify>,
    ) -> impl FnOnce() -> BoxFuture<'static, usize> + Send + 'static {
        let (runs, release) = (runs.clone(), release.clone());
        move || {
            async move {
                let run = runs.fetch_add(1, Ordering::SeqCst) + 1;
                release.notified().await;
                run
            }
            .boxed()
        }
    }

    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn callers_during_a_running_patch_share_the_next_one() {
        let coalescer = Arc::new(Coalescer::<&str, usize>::default());
        let (runs, release) = (Arc::new(AtomicUsize::new(0)), Arc::new(Notify::new()));
        let first = tokio::spawn({
            let (c, w) = (coalescer.clone(), work(&runs, &release));
            async move { c.run("a", w).await }
        });
        settle().await;
        assert_eq!(runs.load(Ordering::SeqCst), 1, "the first patch started");
        // Arrive while the first patch runs: none may be served by it.
        let later: Vec<_> = (0..5)
            .map(|_| {
                let (c, w) = (coalescer.clone(), work(&runs, &release));
                tokio::spawn(async move { c.run("a", w).await })
            })
            .collect();
        settle().await;
        assert_eq!(runs.load(Ordering::SeqCst), 1, "the next patch waits");
        release.notify_one();
        assert_eq!(first.await.unwrap(), (Some(1), Served::Queued));
        settle().await;
        release.notify_one();
        let mut served = Vec::new();
        for handle in later {
            let (value, how) = handle.await.unwrap();
            assert_eq!(
                value,
                Some(2),
                "served by the patch that started after them"
            );
            served.push(how);
        }
        assert_eq!(served.iter().filter(|s| **s == Served::Queued).count(), 1);
        assert_eq!(runs.load(Ordering::SeqCst), 2, "six callers, two patches");
        settle().await;
        assert_eq!(coalescer.len(), 0, "the object is forgotten when idle");
    }

    #[tokio::test]
    async fn different_objects_do_not_wait_for_each_other() {
        let coalescer = Arc::new(Coalescer::<&str, usize>::default());
        let (runs, release) = (Arc::new(AtomicUsize::new(0)), Arc::new(Notify::new()));
        let handles: Vec<_> = ["a", "b", "c"]
            .into_iter()
            .map(|key| {
                let (c, w) = (coalescer.clone(), work(&runs, &release));
                tokio::spawn(async move { c.run(key, w).await })
            })
            .collect();
        settle().await;
        assert_eq!(runs.load(Ordering::SeqCst), 3, "all three run at once");
        for _ in 0..3 {
            release.notify_one();
            settle().await;
        }
        for handle in handles {
            assert_eq!(handle.await.unwrap().1, Served::Queued);
        }
    }

    #[tokio::test]
    async fn a_failing_patch_fails_every_caller_that_shared_it() {
        let coalescer = Arc::new(Coalescer::<&str, Result<(), String>>::default());
        let gate = Arc::new(Notify::new());
        let blocker = {
            let (c, gate) = (coalescer.clone(), gate.clone());
            tokio::spawn(async move {
                c.run("a", move || {
                    async move {
                        gate.notified().await;
                        Ok(())
                    }
                    .boxed()
                })
                .await
            })
        };
        settle().await;
        let sharers: Vec<_> = (0..4)
            .map(|_| {
                let c = coalescer.clone();
                tokio::spawn(async move {
                    c.run("a", || async { Err("forbidden".to_string()) }.boxed())
                        .await
                })
            })
            .collect();
        settle().await;
        gate.notify_one();
        assert_eq!(blocker.await.unwrap().0, Some(Ok(())));
        for handle in sharers {
            assert_eq!(handle.await.unwrap().0, Some(Err("forbidden".to_string())));
        }
    }

    #[tokio::test]
    async fn a_patch_that_panics_answers_none_and_frees_the_object() {
        let coalescer = Arc::new(Coalescer::<&str, usize>::default());
        let (value, _) = coalescer
            .run("a", || async { panic!("patch task died") }.boxed())
            .await;
        assert_eq!(value, None);
        // The poisoned slot does not block the next caller.
        let next = tokio::time::timeout(
            Duration::from_secs(5),
            coalescer.run("a", || async { 7 }.boxed()),
        )
        .await;
        assert!(
            next.is_ok(),
            "a later caller is not stuck behind the dead patch"
        );
    }
}
