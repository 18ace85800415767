//! Messages to the kernel that no request asked for (`FUSE_NOTIFY_*`): cache invalidations.
//!
//! The mount lets the kernel cache entries and attributes for a long time (see `ops`), which is
//! right only if the file system says when a cached attribute goes stale behind the kernel's
//! back. The one case today: a WRITE that the kernel's writeback sends allocates blocks, and the
//! kernel, which keeps size and times itself under the writeback cache, does not track
//! `st_blocks`.
//!
//! Deadlock rule: the kernel serves an invalidation by looking the inode up, and that lookup
//! waits for an inode being evicted, whose eviction waits for the inode's page writeback, that is
//! for WRITE replies. So an invalidation must never be sent by a thread that may owe the kernel
//! such a reply while the inode could be evicting:
//! - [`Notifier::inval_attrs`] sends at once; it is for handlers of requests made through an open
//!   file (FSYNC, FALLOCATE), whose inode cannot be evicting;
//! - [`Notifier::inval_attrs_later`] queues the invalidation for the session's notifier thread,
//!   which answers no request; it is for everything else (WRITE, which writeback sends).

use std::collections::HashSet;
use std::io;
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex};
use zerocopy::IntoBytes;

use super::abi;
use super::reply::{out_header, send_vectored};
use super::transport::Transport;

/// Sends invalidations on one channel of a FUSE connection. Cheap to clone.
#[derive(Clone)]
pub struct Notifier {
    transport: Arc<dyn Transport>,
    deferred: Arc<Deferred>,
}

/// The invalidations waiting for the notifier thread: each inode at most once, so the set is
/// bounded by the inodes being written, however many WRITEs change their block counts.
#[derive(Default)]
struct Deferred {
    pending: Mutex<Pending>,
    ready: Condvar,
}

#[derive(Default)]
struct Pending {
    nodeids: HashSet<u64>,
    stop: bool,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier").field("pending", &self.deferred.pending.lock().nodeids.len()).finish()
    }
}

impl Notifier {
    /// A notifier writing to `transport` and the thread that sends its deferred invalidations;
    /// the thread ends at [`NotifierThread::stop`].
    pub fn start(transport: Arc<dyn Transport>) -> io::Result<(Notifier, NotifierThread)> {
        let notifier = Notifier { transport, deferred: Arc::default() };
        let worker = notifier.clone();
        let thread = std::thread::Builder::new().name("vexfs-fuse-notify".to_owned()).spawn(move || worker.serve())?;
        Ok((notifier.clone(), NotifierThread { deferred: notifier.deferred, thread: Some(thread) }))
    }

    /// Drops the kernel's cached attributes of `nodeid` now. Only from a request made through an
    /// open file of `nodeid` (see the module documentation).
    pub fn inval_attrs(&self, nodeid: u64) {
        // off < 0: attributes only; the page cache stays.
        let out = abi::fuse_notify_inval_inode_out { ino: nodeid, off: -1, len: 0 };
        self.send(abi::FUSE_NOTIFY_INVAL_INODE, out.as_bytes());
    }

    /// Queues [`Notifier::inval_attrs`] for the notifier thread; safe from any request handler.
    /// An inode already queued is not queued twice.
    pub fn inval_attrs_later(&self, nodeid: u64) {
        let mut pending = self.deferred.pending.lock();
        if pending.nodeids.insert(nodeid) {
            self.deferred.ready.notify_one();
        }
    }

    /// Sends the queued invalidations until stopped; what is queued at the stop is sent first.
    fn serve(&self) {
        loop {
            let batch = {
                let mut pending = self.deferred.pending.lock();
                while pending.nodeids.is_empty() && !pending.stop {
                    self.deferred.ready.wait(&mut pending);
                }
                if pending.nodeids.is_empty() {
                    return;
                }
                std::mem::take(&mut pending.nodeids)
            };
            for nodeid in batch {
                self.inval_attrs(nodeid);
            }
        }
    }

    /// One notification: `fuse_out_header` with `unique` 0 and the code in `error`, then `body`.
    fn send(&self, code: i32, body: &[u8]) {
        let header = out_header(0, code, &[body]);
        match send_vectored(&*self.transport, &header, &[body]) {
            Ok(()) => {}
            // ENOENT: the kernel does not cache the inode (nothing to invalidate); ENODEV: the
            // file system is unmounted.
            Err(err) if matches!(err.raw_os_error(), Some(libc::ENOENT | libc::ENODEV)) => {}
            Err(err) => tracing::warn!(code, %err, "FUSE notification failed"),
        }
    }
}

/// The thread behind [`Notifier::inval_attrs_later`].
pub struct NotifierThread {
    deferred: Arc<Deferred>,
    thread: Option<JoinHandle<()>>,
}

impl NotifierThread {
    /// Sends what is queued, then ends the thread.
    pub fn stop(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.deferred.pending.lock().stop = true;
            self.deferred.ready.notify_one();
            if thread.join().is_err() {
                tracing::error!("the FUSE notifier thread panicked");
            }
        }
    }
}

impl Drop for NotifierThread {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}
