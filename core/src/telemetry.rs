//! Logging for the binaries: structured `tracing` events to stderr, filtered by `RUST_LOG`
//! (default `info`). Wiring only; nothing here changes what a service does.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Installs the process-wide subscriber; a second call is a no-op.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}
