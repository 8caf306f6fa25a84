//! The loop every reconciler runs: call `pass` every `period` until shutdown, log what it
//! repaired and keep going on errors (a reconciler that dies would let work stay lost).

use std::future::Future;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Runs `pass` now and then every `period` until `shutdown` is cancelled. `pass` returns
/// how many units of work it re-published or repaired.
pub async fn run_periodically<F, Fut, E>(
    name: &'static str,
    period: Duration,
    shutdown: CancellationToken,
    mut pass: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<usize, E>>,
    E: std::fmt::Display,
{
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        match pass().await {
            Ok(0) => {}
            Ok(repaired) => {
                tracing::info!(reconciler = name, repaired, "reconciler pass repaired work")
            }
            Err(error) => {
                tracing::warn!(reconciler = name, %error, "reconciler pass failed; retrying next period")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test(start_paused = true)]
    async fn keeps_running_through_errors_and_stops_on_shutdown() {
        let passes = Arc::new(AtomicU32::new(0));
        let shutdown = CancellationToken::new();
        let task = tokio::spawn({
            let passes = passes.clone();
            let shutdown = shutdown.clone();
            run_periodically("test", Duration::from_secs(10), shutdown, move || {
                let n = passes.fetch_add(1, Ordering::SeqCst);
                async move {
                    if n.is_multiple_of(2) {
                        Err("database unavailable")
                    } else {
                        Ok(1)
                    }
                }
            })
        });
        tokio::time::sleep(Duration::from_secs(35)).await;
        assert_eq!(passes.load(Ordering::SeqCst), 4, "now, 10 s, 20 s, 30 s");
        shutdown.cancel();
        task.await.unwrap();
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(passes.load(Ordering::SeqCst), 4, "no pass after shutdown");
    }
}
