//! The access log's writer. Requests append finished lines to one shared byte buffer and
//! never wait; a thread wakes every `FLUSH_EVERY`, swaps the buffer for an empty one and
//! writes it out in one go (nginx's `access_log … buffer= flush=`). A line that would take
//! the buffer past its size is dropped and counted, so a slow disk costs log lines, never
//! request latency.
//!
//! Why a byte buffer and a timer rather than a channel of lines: a `String` per line freed on
//! the writer's thread and a wake-up per line cost a fifth of the rule path's requests/s
//! (glibc's allocator pays for frees across threads; the wake-up is a futex call and a
//! context switch on the request's core). Here a line costs one copy under a lock that the
//! writer holds only to swap two vectors.
//!
//! The `reopen` flag (set by SIGUSR1, the logrotate convention) makes the thread reopen the
//! file by its path before its next write.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use prometheus::IntCounter;

use crate::config::LogTarget;

/// How often the writer writes out the buffer and looks at the reopen flag.
const FLUSH_EVERY: Duration = Duration::from_millis(50);

struct Shared {
    buffer: Mutex<Vec<u8>>,
    capacity: usize,
    stop: AtomicBool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Vec<u8>> {
        self.buffer.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub struct LogWriter {
    shared: Arc<Shared>,
    dropped: IntCounter,
    thread: Option<JoinHandle<()>>,
}

impl LogWriter {
    /// Open `target` (a file is created and appended to) and start the writing thread;
    /// `capacity` bytes may wait for it.
    pub fn start(
        target: &LogTarget,
        capacity: usize,
        reopen: Arc<AtomicBool>,
        dropped: IntCounter,
    ) -> io::Result<LogWriter> {
        let sink = Sink::open(target)?;
        let shared = Arc::new(Shared {
            buffer: Mutex::new(Vec::with_capacity(capacity)),
            capacity,
            stop: AtomicBool::new(false),
        });
        let thread = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("access-log".into())
                .spawn(move || write_loop(sink, &shared, &reopen))?
        };
        Ok(LogWriter {
            shared,
            dropped,
            thread: Some(thread),
        })
    }

    /// Append one line (without its newline); drop and count it when the buffer is full.
    pub fn write(&self, line: &[u8]) {
        let mut buffer = self.shared.lock();
        if buffer.len() + line.len() + 1 > self.shared.capacity {
            drop(buffer);
            self.dropped.inc();
            return;
        }
        buffer.extend_from_slice(line);
        buffer.push(b'\n');
    }
}

impl Drop for LogWriter {
    /// Write out what is buffered before the process goes.
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

enum Sink {
    File(PathBuf, File),
    Stdout(io::Stdout),
}

impl Sink {
    fn open(target: &LogTarget) -> io::Result<Sink> {
        Ok(match target {
            LogTarget::File(path) => Sink::File(path.clone(), append(path)?),
            LogTarget::Stdout => Sink::Stdout(io::stdout()),
        })
    }

    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Sink::File(_, f) => f.write_all(bytes),
            Sink::Stdout(s) => {
                let mut s = s.lock();
                s.write_all(bytes).and_then(|()| s.flush())
            }
        }
    }

    /// Reopen a file by its path (the old one was renamed away); stdout stays.
    fn reopen(&mut self) {
        if let Sink::File(path, f) = self {
            match append(path) {
                Ok(new) => *f = new,
                Err(e) => log::error!("access log: cannot reopen {}: {e}", path.display()),
            }
        }
    }
}

fn append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

fn write_loop(mut sink: Sink, shared: &Shared, reopen: &AtomicBool) {
    let mut spare = Vec::with_capacity(shared.capacity);
    let mut failing = false;
    loop {
        // Parked, not sleeping, so that Drop can wake it for the last write.
        std::thread::park_timeout(FLUSH_EVERY);
        let stopping = shared.stop.load(Ordering::Acquire);
        if reopen.swap(false, Ordering::AcqRel) {
            sink.reopen();
        }
        std::mem::swap(&mut *shared.lock(), &mut spare);
        if !spare.is_empty() {
            // One error line per failing stretch, not one per write.
            match sink.write_all(&spare) {
                Err(e) if !failing => {
                    log::error!("access log: write failed: {e}");
                    failing = true;
                }
                Err(_) => {}
                Ok(()) => failing = false,
            }
            spare.clear();
        }
        if stopping {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counter() -> IntCounter {
        IntCounter::new("dropped", "test").unwrap()
    }

    fn wait_for(p: &Path, text: &str) {
        for _ in 0..200 {
            if std::fs::read_to_string(p).is_ok_and(|t| t.contains(text)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("{text} never reached {}", p.display());
    }

    #[test]
    fn lines_are_written_and_reopen_follows_a_rename() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let reopen = Arc::new(AtomicBool::new(false));
        let w = LogWriter::start(
            &LogTarget::File(path.clone()),
            1024,
            reopen.clone(),
            counter(),
        )
        .unwrap();
        w.write(b"one");
        wait_for(&path, "one\n");
        let rotated = dir.path().join("access.log.1");
        std::fs::rename(&path, &rotated).unwrap();
        reopen.store(true, Ordering::Release);
        // The flag is read before the next write: wait until the new file exists.
        for _ in 0..200 {
            if path.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        w.write(b"two");
        drop(w);
        assert_eq!(std::fs::read_to_string(&rotated).unwrap(), "one\n");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two\n");
    }

    #[test]
    fn a_full_buffer_drops_and_counts_instead_of_waiting() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let dropped = counter();
        let w = LogWriter::start(
            &LogTarget::File(path.clone()),
            8,
            Arc::new(AtomicBool::new(false)),
            dropped.clone(),
        )
        .unwrap();
        // The second and third lines do not fit, whether or not the first was written out.
        w.write(b"kept");
        w.write(b"dropped line");
        w.write(b"dropped too");
        drop(w);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "kept\n");
        assert_eq!(dropped.get(), 2);
    }
}
