//! SIGHUP → reload; SIGUSR1 → reopen the access log (the logrotate convention).
//!
//! Pingora handles SIGQUIT/SIGTERM/SIGINT but not SIGHUP, whose default action kills the
//! process. So `main` installs the handler first thing, before anything could receive the
//! signal: the handler only writes a byte to a socket pair (async-signal-safe), and a
//! background service started inside Pingora reads that socket and runs the reload. The
//! socket pair survives Pingora's daemonising fork; the signal disposition does too.

use std::os::unix::net::UnixStream as StdUnixStream;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::net::UnixStream;

use crate::state::Reloader;

/// The read end of the SIGHUP pipe, held until the reload service starts.
pub struct HangupPipe(Mutex<Option<StdUnixStream>>);

impl HangupPipe {
    /// Install the SIGHUP handler. Call before anything else in `main`.
    pub fn install() -> std::io::Result<HangupPipe> {
        let (read, write) = StdUnixStream::pair()?;
        read.set_nonblocking(true)?;
        write.set_nonblocking(true)?;
        signal_hook::low_level::pipe::register(signal_hook::consts::SIGHUP, write)?;
        Ok(HangupPipe(Mutex::new(Some(read))))
    }

    fn take(&self) -> Option<StdUnixStream> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// Set by SIGUSR1, cleared by the access log's writer when it reopened its file. Installed
/// first thing in `main` like SIGHUP: SIGUSR1's default action ends the process.
pub fn install_reopen_flag() -> std::io::Result<Arc<std::sync::atomic::AtomicBool>> {
    let flag = Arc::new(std::sync::atomic::AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGUSR1, Arc::clone(&flag))?;
    Ok(flag)
}

pub struct ReloadOnHangup {
    pub pipe: HangupPipe,
    pub reloader: Arc<Reloader>,
}

#[async_trait]
impl BackgroundService for ReloadOnHangup {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let Some(std_stream) = self.pipe.take() else {
            log::error!("SIGHUP listener started twice; reloads by signal are disabled");
            return;
        };
        let stream = match UnixStream::from_std(std_stream) {
            Ok(s) => s,
            Err(e) => {
                log::error!("SIGHUP listener: {e}; reloads by signal are disabled");
                return;
            }
        };
        let mut buf = [0u8; 64];
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                ready = stream.readable() => {
                    if let Err(e) = ready {
                        log::error!("SIGHUP listener: {e}");
                        return;
                    }
                }
            }
            // Several signals queued while a reload ran are one reload: drain, then reload.
            match stream.try_read(&mut buf) {
                Ok(0) => return,
                Ok(_) => {
                    while matches!(stream.try_read(&mut buf), Ok(n) if n > 0) {}
                    log::info!("SIGHUP: reloading configuration");
                    let reloader = Arc::clone(&self.reloader);
                    // Errors are logged and counted inside `reload`.
                    let _ = tokio::task::spawn_blocking(move || reloader.reload()).await;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => {
                    log::error!("SIGHUP listener: {e}");
                    return;
                }
            }
        }
    }
}
