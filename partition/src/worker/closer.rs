//! Closing retired readers on a thread the worker owns.
//!
//! Closing a Kafka consumer waits for librdkafka's threads (~100 ms measured). A promotion and a
//! step-down each retire readers, and closing them inline would put that wait inside a
//! handover's unavailability window. So the worker hands them to its own closer thread, through
//! a bounded queue; when the worker exits it drops the queue and joins the closer, so no thread
//! outlives the replica and a joined replica has closed every reader it opened. The wait at
//! exit is bounded by the queue: at most [`QUEUE`] closes.

use lightkeeper_storage::log::TopicReader;
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tracing::warn;

/// Readers waiting to be closed. A handover retires two; a full queue closes inline.
const QUEUE: usize = 8;
/// A wait at exit longer than this is logged.
const SLOW_EXIT: Duration = Duration::from_secs(2);

pub(super) struct Closer(Inner);

enum Inner {
    /// Readers go to the closer thread.
    Thread { queue: SyncSender<Box<dyn TopicReader>>, thread: JoinHandle<()> },
    /// No closer thread (it could not be spawned, or the worker is exiting): close inline —
    /// slower, not wrong.
    Inline,
}

impl Closer {
    pub(super) fn start(partition: u32) -> Closer {
        let (queue, rx) = sync_channel::<Box<dyn TopicReader>>(QUEUE);
        let spawned = std::thread::Builder::new()
            .name(format!("partition-{partition}-close"))
            .spawn(move || rx.into_iter().for_each(drop));
        match spawned {
            Ok(thread) => Closer(Inner::Thread { queue, thread }),
            Err(e) => {
                warn!(partition, error = %e, "could not spawn the reader-closing thread; closing readers inline");
                Closer(Inner::Inline)
            }
        }
    }

    /// Closes `reader` off this thread when the queue has room, else here.
    pub(super) fn close(&self, reader: Box<dyn TopicReader>) {
        if let Inner::Thread { queue, .. } = &self.0 {
            match queue.try_send(reader) {
                Ok(()) => {}
                Err(TrySendError::Full(r) | TrySendError::Disconnected(r)) => drop(r),
            }
        }
    }
}

impl Drop for Closer {
    /// Waits for the readers already queued to be closed.
    fn drop(&mut self) {
        if let Inner::Thread { queue, thread } = std::mem::replace(&mut self.0, Inner::Inline) {
            drop(queue);
            let started = Instant::now();
            let _ = thread.join();
            if started.elapsed() > SLOW_EXIT {
                warn!(waited_ms = started.elapsed().as_millis() as u64, "closing retired readers was slow");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lightkeeper_storage::log::{LogError, Polled};
    use std::sync::{Arc, Mutex};

    /// Records the thread it was closed on.
    struct Probe(Arc<Mutex<Vec<String>>>);

    impl TopicReader for Probe {
        fn poll(&mut self, _: usize, _: Duration) -> Result<Polled, LogError> {
            Ok(Polled::default())
        }
        fn position(&self) -> u64 {
            0
        }
    }

    impl Drop for Probe {
        fn drop(&mut self) {
            let name = std::thread::current().name().unwrap_or_default().to_owned();
            self.0.lock().unwrap().push(name);
        }
    }

    #[test]
    fn readers_are_closed_on_the_owned_thread_and_all_closed_when_the_closer_drops() {
        let closed = Arc::new(Mutex::new(Vec::new()));
        let closer = Closer::start(7);
        for _ in 0..3 {
            closer.close(Box::new(Probe(closed.clone())));
        }
        drop(closer);
        // Dropping the closer joined its thread: every reader is closed by now, and off the
        // caller's thread.
        assert_eq!(*closed.lock().unwrap(), vec!["partition-7-close".to_owned(); 3]);
    }
}
