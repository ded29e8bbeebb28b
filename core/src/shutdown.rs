//! Stopping: the process signal that starts a graceful shutdown, the [`Stop`] that tells
//! servers to stop accepting, and [`drain`], which gives in-flight work a bounded grace
//! period once they have.

use std::{future::Future, time::Duration};

use tokio::sync::watch;

/// Resolves on the first SIGINT or SIGTERM.
pub async fn signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot listen for sigterm");
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
    tracing::info!("shutdown signal received");
}

/// A stop request that any number of tasks wait on; clones share it. Once stopped it stays
/// stopped, and a task that starts waiting afterwards sees it at once.
#[derive(Debug, Clone)]
pub struct Stop {
    flag: watch::Sender<bool>,
}

impl Default for Stop {
    fn default() -> Self {
        Self::new()
    }
}

impl Stop {
    /// A stop nobody has requested yet.
    pub fn new() -> Self {
        Self {
            flag: watch::Sender::new(false),
        }
    }

    /// Requests the stop; every waiter wakes.
    pub fn stop(&self) {
        self.flag.send_replace(true);
    }

    /// Whether the stop has been requested.
    pub fn is_stopped(&self) -> bool {
        *self.flag.borrow()
    }

    /// Resolves once the stop is requested; owns what it needs, so it can be spawned.
    pub fn stopped(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut flag = self.flag.subscribe();
        async move {
            // The sender lives in `self` and its clones; if all are gone nobody can stop
            // us any more, which is the same as never.
            if flag.wait_for(|stopped| *stopped).await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

/// Runs `server` (which stops accepting when `stop` is requested and then finishes its
/// in-flight work) and, once the stop is requested, waits at most `grace` for it before
/// giving up on what is still in flight.
pub async fn drain<E>(
    what: &'static str,
    server: impl Future<Output = Result<(), E>>,
    stop: &Stop,
    grace: Duration,
) -> Result<(), E> {
    let grace_elapsed = {
        let stopped = stop.stopped();
        async move {
            stopped.await;
            tokio::time::sleep(grace).await;
        }
    };
    tokio::select! {
        result = server => result,
        () = grace_elapsed => {
            tracing::warn!(server = what, ?grace, "shutdown grace elapsed, dropping in-flight work");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_stop_wakes_every_waiter_even_late_ones() {
        let stop = Stop::new();
        let early = tokio::spawn(stop.stopped());
        assert!(!stop.is_stopped());
        stop.clone().stop();
        early.await.ok();
        assert!(stop.is_stopped());
        // Already stopped: resolves at once.
        tokio::time::timeout(Duration::from_millis(1), stop.stopped())
            .await
            .ok();
    }

    #[tokio::test(start_paused = true)]
    async fn drain_waits_for_the_server_but_no_longer_than_the_grace() {
        let stop = Stop::new();
        // A server that finishes its in-flight work 5 s after the stop.
        let quick = {
            let stopped = stop.stopped();
            async move {
                stopped.await;
                tokio::time::sleep(Duration::from_secs(5)).await;
                Err::<(), &str>("finished")
            }
        };
        stop.stop();
        let started = tokio::time::Instant::now();
        assert_eq!(
            drain("quick", quick, &stop, Duration::from_secs(10)).await,
            Err("finished"),
            "a server that finishes in time gives its own result"
        );
        assert_eq!(started.elapsed(), Duration::from_secs(5));

        let hung = std::future::pending::<Result<(), &str>>();
        let started = tokio::time::Instant::now();
        assert_eq!(
            drain("hung", hung, &stop, Duration::from_secs(10)).await,
            Ok(())
        );
        assert_eq!(started.elapsed(), Duration::from_secs(10));
    }
}
