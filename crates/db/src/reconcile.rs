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
