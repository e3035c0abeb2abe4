//! Open-loop pacing: starting each request at its scheduled time, whether or not the earlier
//! ones have finished.
//!
//! tokio's timer ticks once a millisecond: `sleep_until(t)` wakes at the first tick at or after
//! `t`, on average half a millisecond late, and a latency measured from the scheduled start
//! carries that lateness — the `/healthz` floors recorded before 2026-11-30 (~1 ms at p50 for a
//! request that takes 0.3 ms alone) were mostly the load generator's timer. Here a pacing
//! thread sleeps with the OS's high-resolution timer (`std::thread::sleep`, tens of µs late on
//! Linux) and hands each request to the runtime at its time. Latency still runs from the
//! scheduled start, so whatever delays a request — the pacer, the hand-off to the runtime, the
//! server — counts against it (no coordinated omission).

use std::future::Future;
use std::time::{Duration, Instant};

/// Spawns `start(item, scheduled)` on the current runtime for each of `items`, one every
/// `interval` from now; returns once the last has been started (not finished).
pub async fn open_loop<I, F, Fut>(items: I, interval: Duration, mut start: F)
where
    I: IntoIterator + Send + 'static,
    I::IntoIter: Send,
    F: FnMut(I::Item, Instant) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let rt = tokio::runtime::Handle::current();
    // The pacer blocks in its sleeps: a thread of the blocking pool, not a runtime worker.
    tokio::task::spawn_blocking(move || {
        let begin = Instant::now();
        for (i, item) in items.into_iter().enumerate() {
            let scheduled = begin + interval.mul_f64(i as f64);
            if let Some(wait) = scheduled.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            rt.spawn(start(item, scheduled));
        }
    })
    .await
    .expect("the pacing thread panicked");
}
