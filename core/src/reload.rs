//! Reloading the config while serving: on a change to the file (editors that replace the
//! file included) or on SIGHUP, the file is read again with the same environment overrides
//! and handed to the binary's `apply`, which compiles it and swaps it in atomically. A file
//! that does not load or apply is refused, with the file, the key and why in the log, and
//! the running config stays.

use std::{
    future::Future,
    path::{Path, PathBuf},
    time::Duration,
};

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

use crate::config::{self, Config, ConfigError};

/// How long to wait for a burst of file events to settle before reloading.
pub const SETTLE: Duration = Duration::from_millis(200);

/// Reads `path` (with `env`'s overrides) and hands it to `apply`; returns what it applied.
pub fn reload_now(
    path: &Path,
    env: &[(String, String)],
    apply: &impl Fn(&Config, &Path) -> Result<(), ConfigError>,
) -> Result<Config, ConfigError> {
    let config = config::load(path, env.iter().cloned())?;
    apply(&config, path)?;
    Ok(config)
}

/// Watches `path` and SIGHUP until `shutdown` resolves, reloading through `apply` on each
/// and telling `observe` how each went (`None`: applied); a reload that changes a setting
/// of `started` (what the binary started with) that only a restart applies is named in a
/// warning.
pub async fn watch(
    path: PathBuf,
    env: Vec<(String, String)>,
    mut hangups: Hangups,
    started: Config,
    shutdown: impl Future<Output = ()>,
    apply: impl Fn(&Config, &Path) -> Result<(), ConfigError>,
    observe: impl Fn(Option<&ConfigError>),
) {
    let (changed, mut changes) = mpsc::channel::<()>(1);
    let _watcher = match file_watcher(&path, changed) {
        Ok(watcher) => Some(watcher),
        Err(err) => {
            tracing::warn!(file = %path.display(), error = %err, "cannot watch the config file; SIGHUP still reloads");
            None
        }
    };
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            Some(()) = changes.recv() => {
                tokio::time::sleep(SETTLE).await;
                while changes.try_recv().is_ok() {}
            }
            Some(()) = recv(&mut hangups) => {}
        }
        let reloaded = reload_now(&path, &env, &apply);
        observe(reloaded.as_ref().err());
        match reloaded {
            Ok(config) => {
                tracing::info!(file = %path.display(), "config reloaded");
                let pending = config.needs_restart(&started);
                if !pending.is_empty() {
                    tracing::warn!(
                        file = %path.display(),
                        keys = %pending.join(", "),
                        "these settings changed but take effect only after a restart"
                    );
                }
            }
            Err(err) => {
                tracing::error!(error = %err, "config reload refused, keeping the running config")
            }
        }
    }
}

/// A watcher on the file's directory (so that a replaced file is seen) that signals changes
/// to the file itself.
fn file_watcher(
    path: &Path,
    changed: mpsc::Sender<()>,
) -> notify::Result<notify::RecommendedWatcher> {
    let name = path.file_name().map(|name| name.to_owned());
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        if event.kind.is_access() {
            return;
        }
        if event.paths.iter().any(|p| p.file_name() == name.as_deref()) {
            let _ = changed.try_send(());
        }
    })?;
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
        _ => PathBuf::from("."),
    };
    watcher.watch(&directory, RecursiveMode::NonRecursive)?;
    Ok(watcher)
}

/// SIGHUP, listened for: from the moment it exists a SIGHUP is kept for [`watch`] instead
/// of ending the process (the signal's default), so a binary takes it before it serves.
#[cfg(unix)]
pub type Hangups = Option<tokio::signal::unix::Signal>;
/// SIGHUP, listened for (none on this platform).
#[cfg(not(unix))]
pub type Hangups = Option<()>;

/// Starts listening for SIGHUP (inside the tokio runtime).
#[cfg(unix)]
pub fn hangups() -> Hangups {
    use tokio::signal::unix::{SignalKind, signal};
    signal(SignalKind::hangup())
        .map_err(|err| tracing::warn!(error = %err, "cannot listen for sighup"))
        .ok()
}

/// Starts listening for SIGHUP (none on this platform).
#[cfg(not(unix))]
pub fn hangups() -> Hangups {
    None
}

async fn recv(hangups: &mut Hangups) -> Option<()> {
    #[cfg(unix)]
    if let Some(signal) = hangups {
        return signal.recv().await;
    }
    let _ = hangups;
    std::future::pending().await
}
