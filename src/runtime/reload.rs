//! SIGHUP: read the subscriber file again and hand the new table to every core
//! without stopping traffic (issue 5: "reloaded on SIGHUP without dropping traffic"),
//! and read the TLS certificate and key (and client CAs) again (issue 16): new
//! handshakes use the new ones, established sessions keep theirs, and a bad new file
//! keeps the old one.
//!
//! The signal thread parses the file; on success it stores the new table and bumps a
//! generation number. Each core compares the generation once per loop turn (one
//! relaxed atomic load) and, when it moved, swaps its `Arc` in. A file that fails to
//! parse changes nothing: the old table stays, and the error is logged with the line.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

use signal_hook::consts::SIGHUP;
use signal_hook::iterator::Signals;

use super::tcp::ServerSource;
use crate::auth::Subscribers;

/// The latest subscriber table and its generation, shared by the cores.
#[derive(Debug, Default)]
pub(crate) struct SubscriberCell {
    generation: AtomicU64,
    latest: Mutex<Option<Arc<Subscribers>>>,
}

impl SubscriberCell {
    /// The generation now (0 until the first reload).
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The table of the latest reload, if any.
    pub(crate) fn latest(&self) -> Option<Arc<Subscribers>> {
        self.latest.lock().ok().and_then(|l| l.clone())
    }

    fn publish(&self, subscribers: Subscribers) {
        if let Ok(mut latest) = self.latest.lock() {
            *latest = Some(Arc::new(subscribers));
        }
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
}

/// Start the thread that reloads `path` (and `tls`'s files) on every SIGHUP. With
/// neither, a SIGHUP is logged and ignored (and no longer kills the process).
pub(crate) fn spawn(
    path: Option<PathBuf>,
    cell: Arc<SubscriberCell>,
    tls: Option<Arc<ServerSource>>,
) -> anyhow::Result<(signal_hook::iterator::Handle, thread::JoinHandle<()>)> {
    let mut signals = Signals::new([SIGHUP])?;
    let handle = signals.handle();
    let thread = thread::Builder::new()
        .name("sipreg-reload".into())
        .spawn(move || {
            for _ in signals.forever() {
                for outcome in tls.iter().flat_map(|server| server.reload()) {
                    match outcome {
                        Ok(what) => tracing::info!("SIGHUP: reloaded {what}"),
                        Err(e) => tracing::warn!(
                            "SIGHUP: TLS reload failed, keeping the current one: {}: {}",
                            e.flag,
                            e.reason
                        ),
                    }
                }
                let Some(path) = &path else {
                    if tls.is_none() {
                        tracing::info!("SIGHUP: nothing to reload (no --auth-file)");
                    }
                    continue;
                };
                match crate::auth::subscriber_file::load(path) {
                    Ok(subscribers) => {
                        let n = subscribers.len();
                        cell.publish(subscribers);
                        tracing::info!(subscribers = n, "SIGHUP: reloaded {}", path.display());
                    }
                    Err(reason) => {
                        tracing::warn!(
                            "SIGHUP: reload failed, keeping the current subscribers: {reason}"
                        )
                    }
                }
            }
        })?;
    Ok((handle, thread))
}
