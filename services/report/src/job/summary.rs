//! The AI summary step of a report job (crate::ai): gathers the bounded selection,
//! asks the LLM, checks the answer's citations. The call is cancelled when the report
//! is deleted or the lease lost (the connection is closed, so the server stops too).

use super::{BuildError, Gathered, ReportWorker};
use crate::ai::cite::check;
use crate::ai::client::LlmError;
use crate::ai::prompt::{self, Candidate};
use crate::model::AiSummary;
use crate::render::Part;
use crate::repo::{ReportRow, ai};
use casescope_db::KeepAlive;
use casescope_proto::cases::v1 as cases;
use std::collections::HashSet;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// How often a running summary checks that its report still exists.
const WATCH_PERIOD: Duration = Duration::from_millis(500);

fn nonce() -> String {
    let bytes: [u8; 12] = rand::random();
    hex::encode(bytes)
}

impl ReportWorker {
    /// The candidates of the summary: up to the configured number of the selection's
    /// events — its starred events first, then its commented ones, then the rest, each
    /// in time order — compacted (and redacted) as they arrive; and the selection's size.
    async fn candidates(
        &self,
        row: &ReportRow,
        query: &cases::TimelineQuery,
    ) -> Result<(Vec<Candidate>, u64), BuildError> {
        let max = self.settings.ai.candidate_events;
        let redacting = self.settings.ai.redact;
        let mut candidates: Vec<Candidate> = Vec::new();
        let mut seen: HashSet<String> = HashSet::new();
        let mut selected = 0;
        let passes = [
            cases::TimelineQuery {
                only_starred: true,
                ..query.clone()
            },
            cases::TimelineQuery {
                only_commented: true,
                ..query.clone()
            },
            query.clone(),
        ];
        for (pass, pass_query) in passes.iter().enumerate() {
            let last = pass == passes.len() - 1;
            // The first two passes take at most half the room each.
            let limit = if last {
                max
            } else {
                candidates.len() + (max - candidates.len()) / 2
            };
            let mut stream = self.open_export(row, pass_query).await?;
            let mut first = true;
            while candidates.len() < limit || (last && first) {
                let Some(chunk) = self.next_chunk(&mut stream).await? else {
                    break;
                };
                if last && first {
                    selected = chunk.total;
                }
                first = false;
                let room = limit.saturating_sub(candidates.len());
                if room == 0 {
                    break;
                }
                let start = candidates.len();
                let settings = self.settings.clone();
                let batch = tokio::task::spawn_blocking(move || {
                    // The whole chunk (one bounded message): rows an earlier pass took
                    // are dropped below, then the pass keeps what fits its room.
                    let parts = super::timeline::parse(&chunk.data, u64::MAX, &settings)?;
                    let batch: Vec<Candidate> = parts
                        .iter()
                        .enumerate()
                        .filter_map(|(n, part)| match part {
                            Part::TimelineEvent(entry) => {
                                Some(Candidate::new(entry, start + n, redacting))
                            }
                            _ => None,
                        })
                        .collect();
                    Ok::<_, String>(batch)
                })
                .await
                .map_err(|e| BuildError::Transient(format!("parsing stopped: {e}")))?
                .map_err(BuildError::Transient)?;
                for candidate in batch {
                    if candidates.len() - start >= room {
                        break;
                    }
                    if seen.insert(candidate.event_id().to_string()) {
                        candidates.push(candidate);
                    }
                }
            }
        }
        Ok((candidates, selected))
    }

    /// The AI summary of `row` (a failed one says why; only a stop is an error).
    pub(super) async fn ai_summary(
        &self,
        row: &ReportRow,
        query: &cases::TimelineQuery,
        case_name: &str,
        gathered: &mut Gathered,
        keep: &KeepAlive,
    ) -> Result<AiSummary, BuildError> {
        let started = Instant::now();
        let settings = &self.settings.ai;
        let mut summary = AiSummary {
            status: ai::FAILED.into(),
            model: settings
                .endpoint
                .as_ref()
                .map(|e| e.model.clone())
                .unwrap_or_default(),
            redaction_off: !settings.redact,
            ..Default::default()
        };
        let client = match (&self.llm, settings.refusal()) {
            (_, Some(why)) => {
                summary.error = why;
                return Ok(summary);
            }
            (None, None) => {
                summary.error = "the LLM client could not be made (see the service log)".into();
                return Ok(summary);
            }
            (Some(client), None) => client.clone(),
        };
        let detections = self.gathered_detections(row, gathered).await?.clone();
        let iocs = self.gathered_iocs(row, gathered).await?.clone();
        let (candidates, selected) = self.candidates(row, query).await?;
        let words = (settings.answer_tokens * 2 / 3).clamp(60, 400);
        let (budget, per_token, top) = (
            settings.prompt_tokens,
            settings.bytes_per_token,
            settings.top_items,
        );
        let (redacting, case_name) = (settings.redact, case_name.to_string());
        let (prompt, redactions) = tokio::task::spawn_blocking(move || {
            let mut redactions = 0;
            let prompt = prompt::build(
                &nonce(),
                words,
                budget,
                per_token,
                &case_name,
                &detections,
                &iocs,
                top,
                candidates,
                selected,
                redacting,
                &mut redactions,
            );
            (prompt, redactions)
        })
        .await
        .map_err(|e| BuildError::Transient(format!("the prompt was not made: {e}")))?;
        summary.sources = prompt.sources.clone();
        summary.events_given = prompt.events_given;
        summary.events_selected = selected;
        summary.detections_given = prompt.detections_given;
        summary.iocs_given = prompt.iocs_given;
        summary.redactions = redactions;
        tracing::info!(
            report_id = %row.id,
            api = client.endpoint().api.word(),
            model = %client.endpoint().model,
            prompt_tokens_estimate = prompt.tokens,
            events = prompt.events_given,
            "asking the LLM for the report's summary"
        );
        let never = CancellationToken::new();
        let chat = client.chat(
            &prompt.system,
            &prompt.user,
            settings.answer_tokens,
            settings.temperature,
            settings.answer_bytes,
            &never,
        );
        let watch = async {
            loop {
                tokio::time::sleep(WATCH_PERIOD).await;
                if keep.is_lost() {
                    return;
                }
                if let Ok(None) = self.repo.by_id(&row.id).await {
                    return;
                }
            }
        };
        let answer = tokio::select! {
            answer = chat => answer,
            () = watch => Err(LlmError::Cancelled),
        };
        summary.seconds = started.elapsed().as_secs_f64();
        let answer = match answer {
            Ok(answer) => answer,
            Err(LlmError::Cancelled) => {
                tracing::info!(report_id = %row.id, "AI summary cancelled: the report was deleted or taken over");
                return Err(BuildError::Stopped);
            }
            Err(error) => {
                tracing::warn!(report_id = %row.id, %error, "AI summary failed; the report goes on without it");
                summary.error = error.to_string();
                return Ok(summary);
            }
        };
        let known: HashSet<String> = prompt.sources.iter().map(|s| s.id.clone()).collect();
        let text = answer.text.clone();
        let checked = tokio::task::spawn_blocking(move || check(&text, &known))
            .await
            .map_err(|e| BuildError::Transient(format!("checking the summary stopped: {e}")))?;
        if checked.sentences.is_empty() {
            summary.error = format!(
                "the LLM answered nothing usable ({} bytes, finish reason {:?})",
                answer.text.len(),
                answer.finish_reason
            );
            return Ok(summary);
        }
        summary.status = ai::INCLUDED.into();
        summary.sentences = checked.sentences;
        summary.uncited = checked.uncited;
        summary.invented_citations = checked.invented;
        summary.truncated = answer.truncated;
        summary.finish_reason = answer.finish_reason;
        summary.prompt_tokens = answer.prompt_tokens;
        summary.answer_tokens = answer.completion_tokens;
        tracing::info!(
            report_id = %row.id,
            sentences = summary.sentences.len(),
            uncited = summary.uncited,
            invented = summary.invented_citations.len(),
            seconds = summary.seconds,
            "AI summary checked"
        );
        Ok(summary)
    }
}
