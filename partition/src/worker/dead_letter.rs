//! Step 2's dead letters: input records that cannot become objects (undecodable, misrouted).
//!
//! They are appended durably, with the reason, code and source offset as headers, before the
//! batch goes on — so a bad packet is never silently dropped and never blocks the partition —
//! and counted per reason in `lightkeeper_dead_letters_total`. A transient decode failure
//! (registry unreachable) never comes here: the batch is retried instead.

use super::run::Core;
use super::WorkerError;
use crate::metrics::partition_label;
use lightkeeper_storage::log::{Append, LogRecord};
use tracing::warn;

impl Core {
    /// Appends `dead` (record, reason, code) to the dead-letter topic and waits for the acks.
    pub(super) fn dead_letter(&self, dead: &[(&LogRecord, String, &'static str)]) -> Result<(), WorkerError> {
        let label_base = partition_label(self.partition);
        let meta: Vec<(String, String, String)> = dead
            .iter()
            .map(|(rec, _, _)| (self.deps.input.name().to_owned(), rec.partition.to_string(), rec.offset.to_string()))
            .collect();
        let headers: Vec<[(&str, &[u8]); 5]> = dead
            .iter()
            .zip(&meta)
            .map(|((_, why, code), (topic, part, off))| {
                [
                    ("lightkeeper.reason", why.as_bytes()),
                    ("lightkeeper.code", code.as_bytes()),
                    ("lightkeeper.source.topic", topic.as_bytes()),
                    ("lightkeeper.source.partition", part.as_bytes()),
                    ("lightkeeper.source.offset", off.as_bytes()),
                ]
            })
            .collect();
        let appends: Vec<Append<'_>> = dead
            .iter()
            .zip(&headers)
            .map(|((rec, _, _), h)| Append { key: rec.key.as_deref(), payload: &rec.payload, headers: h })
            .collect();
        // The dead-letter topic may have fewer partitions than the input; keep the partition when
        // it exists so per-partition order is preserved.
        let target = self.partition % self.deps.dead_letter.partitions().max(1);
        self.deps.dead_letter.append(target, &appends)?;
        for (rec, why, code) in dead {
            warn!(partition = self.partition, offset = rec.offset, reason = %why, code, "alert sent to dead-letter topic");
            let mut labels = label_base.clone();
            labels.push(("reason".into(), (*code).to_owned()));
            self.deps.metrics.dead_letters.get_or_create(&labels).inc();
        }
        Ok(())
    }
}
