//! Streams of events (`ScanFileEvents`, `StreamEvents`): a task walks the selection in
//! time order one batch at a time (search_after), handing each batch to a channel two
//! deep (and one batch read ahead), so memory is bounded whatever the selection's size
//! and a slow reader slows the walk (gRPC flow control) instead of filling memory.

use crate::convert::event_to_pb;
use casescope_eventstore::{Cursor, EventQuery, EventStore, tiebreak_of};
use casescope_proto::ingest::v1 as pb;
use std::pin::Pin;
use std::sync::Arc;
use tonic::Status;

pub type EventStream<T> = Pin<Box<dyn futures::Stream<Item = Result<T, Status>> + Send>>;

/// Walks `query` (its page size is the batch size) from `query.after`; `wrap` makes a
/// message of one batch, its resume cursor and the total (first batch only, else 0);
/// `empty_first`: an empty selection still sends one (empty) message.
pub fn walk<T: Send + 'static>(
    store: Arc<dyn EventStore>,
    mut query: EventQuery,
    include_raw: bool,
    empty_first: bool,
    wrap: fn(Vec<pb::Event>, String, u64) -> T,
) -> EventStream<T> {
    let (sender, receiver) = tokio::sync::mpsc::channel(2);
    query.skip_raw = !include_raw;
    tokio::spawn(async move {
        let mut first = true;
        // The next batch is read while this one is converted and sent (one batch ahead).
        let search = |store: Arc<dyn EventStore>, query: EventQuery| {
            tokio::spawn(async move { store.search(&query).await })
        };
        let mut pending = search(store.clone(), query.clone());
        // Only the first batch counts the selection.
        query.skip_total = true;
        loop {
            let page = match pending.await {
                Ok(Ok(page)) => page,
                Ok(Err(error)) => {
                    let _ = sender
                        .send(Err(Status::from(crate::api::store_error(error))))
                        .await;
                    return;
                }
                Err(error) => {
                    let _ = sender
                        .send(Err(Status::internal(format!(
                            "reading events failed: {error}"
                        ))))
                        .await;
                    return;
                }
            };
            let cursor = page
                .events
                .last()
                .map(|e| Cursor {
                    timestamp_micros: e.timestamp_micros,
                    tiebreak: tiebreak_of(&e.event_id),
                })
                .map(|c| c.encode())
                .unwrap_or_default();
            let (total, next, batch) = (page.total, page.next, page.events);
            let ahead = next.map(|next| {
                query.after = Some(next);
                search(store.clone(), query.clone())
            });
            // Converting a batch (every event's fields to JSON text) is CPU work.
            let converted = tokio::task::spawn_blocking(move || {
                use rayon::prelude::*;
                batch
                    .into_par_iter()
                    .map(|e| event_to_pb(e, include_raw))
                    .collect::<Vec<pb::Event>>()
            })
            .await;
            let events = match converted {
                Ok(events) => events,
                Err(error) => {
                    let _ = sender
                        .send(Err(Status::internal(format!(
                            "converting events failed: {error}"
                        ))))
                        .await;
                    return;
                }
            };
            // An empty selection still says so (and its total) when asked to.
            if events.is_empty() && !(first && empty_first) {
                return;
            }
            first = false;
            if sender.send(Ok(wrap(events, cursor, total))).await.is_err() {
                return;
            }
            match ahead {
                Some(ahead) => pending = ahead,
                None => return,
            }
        }
    });
    Box::pin(futures::stream::unfold(
        receiver,
        |mut receiver| async move { receiver.recv().await.map(|item| (item, receiver)) },
    ))
}
