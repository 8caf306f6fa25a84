//! The correlation pass of a case (under the case's `correlate` lease): the case's
//! correlation rules evaluated over the correlation inputs of all its files.

use super::*;

impl DetectStage {
    /// Re-evaluates the case's correlation rules over the correlation inputs of all its
    /// files, replacing its correlation detections (identical ones are left untouched).
    pub async fn correlate(&self, case_id: &str) -> Result<(), String> {
        let key = LeaseKey::new(case_id, CORRELATE_STAGE);
        let Some(lease) = self
            .leases
            .acquire(&key, &self.holder, self.settings.lease_ttl)
            .await
            .map_err(|e| e.to_string())?
        else {
            self.wake.notify_one();
            return Ok(()); // another worker correlates; the reconciler re-checks
        };
        let result = self.correlate_leased(case_id, &lease).await;
        let _ = self.leases.release(&lease).await;
        result
    }

    async fn correlate_leased(&self, case_id: &str, lease: &Lease) -> Result<(), String> {
        let Some(generation) = self
            .repo
            .case_generation(case_id)
            .await
            .map_err(|e| e.to_string())?
        else {
            return Ok(());
        };
        let compiled = self.rules.current().await.map_err(|e| e.to_string())?;
        let mut error = None;
        let mut rows: Vec<DetectionRow> = Vec::new();
        if !compiled.set.correlations.is_empty() {
            let limit = self.settings.max_correlation_inputs;
            let inputs = self
                .repo
                .case_inputs(case_id, limit as i64 + 1)
                .await
                .map_err(|e| e.to_string())?;
            if inputs.len() > limit {
                error = Some(format!(
                    "more than {limit} correlation inputs in this case; correlations were not evaluated"
                ));
            } else {
                let compiled = compiled.clone();
                let case = case_id.to_string();
                rows = tokio::task::spawn_blocking(move || {
                    correlation_rows(&compiled, &case, &inputs)
                })
                .await
                .map_err(|e| format!("correlation crashed: {e}"))?;
            }
        }
        let mut tx = match self.leases.fenced(lease).await {
            Ok(tx) => tx,
            Err(LeaseError::Fenced { .. }) => return Ok(()),
            Err(error) => return Err(error.to_string()),
        };
        if error.is_none() {
            let before: HashSet<String> = self
                .repo
                .case_detection_ids(&mut tx, case_id)
                .await
                .map_err(|e| e.to_string())?
                .into_iter()
                .collect();
            let after: HashSet<&str> = rows.iter().map(|r| r.id.as_str()).collect();
            for id in before.iter().filter(|id| !after.contains(id.as_str())) {
                self.repo
                    .delete_detection(&mut tx, case_id, id)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            for row in rows.iter().filter(|r| !before.contains(&r.id)) {
                self.repo
                    .insert_detection(&mut tx, row)
                    .await
                    .map_err(|e| e.to_string())?;
                self.outbox
                    .enqueue(&mut tx, &fact_message(row)?)
                    .await
                    .map_err(|e| e.to_string())?;
            }
        }
        self.repo
            .mark_correlated(&mut tx, case_id, generation, error.as_deref())
            .await
            .map_err(|e| e.to_string())?;
        tx.commit().await.map_err(|e| e.to_string())?;
        self.outbox.nudge();
        if let Some(error) = error {
            tracing::warn!(case_id, %error, "correlation skipped");
        }
        Ok(())
    }
}

fn correlation_db_id(compiled: &Compiled, index: usize) -> Option<String> {
    let correlation = &compiled.set.correlations[index];
    if compiled.meta.contains_key(&correlation.id) {
        return Some(correlation.id.clone());
    }
    let title = correlation.id.strip_prefix("title:")?;
    compiled
        .meta
        .values()
        .find(|row| row.is_correlation && row.title == title && compiled.rule_ids.contains(&row.id))
        .map(|row| row.id.clone())
}

/// Correlation detections of a case from its inputs.
fn correlation_rows(compiled: &Compiled, case_id: &str, inputs: &[InputRow]) -> Vec<DetectionRow> {
    let index_of: HashMap<String, usize> = (0..compiled.set.rules.len())
        .map(|i| (rule_db_id(compiled, i), i))
        .collect();
    let by_event: HashMap<&str, &InputRow> =
        inputs.iter().map(|i| (i.event_id.as_str(), i)).collect();
    let hits: Vec<BaseHit> = inputs
        .iter()
        .filter_map(|input| {
            let rule = *index_of.get(&input.rule_id)?;
            Some(BaseHit {
                rule,
                timestamp_micros: input.event_ts,
                event: input.event_id.clone(),
                values: serde_json::from_str(&input.vals).unwrap_or_default(),
            })
        })
        .collect();
    let now = casescope_db::now_micros();
    let mut rows = Vec::new();
    for hit in compiled.set.correlate(&hits) {
        let Some(rule_id) = correlation_db_id(compiled, hit.correlation) else {
            continue;
        };
        let Some(meta) = compiled.meta.get(&rule_id) else {
            continue;
        };
        let mut events = hit.events.clone();
        events.sort();
        let refs: Vec<&str> = std::iter::once(rule_id.as_str())
            .chain(events.iter().map(String::as_str))
            .collect();
        // The event that completed the window: the latest one.
        let last = hit
            .events
            .iter()
            .filter_map(|e| by_event.get(e.as_str()))
            .max_by_key(|i| (i.event_ts, i.event_id.as_str()));
        let Some(last) = last else { continue };
        let mut ordered: Vec<&InputRow> = hit
            .events
            .iter()
            .filter_map(|e| by_event.get(e.as_str()).copied())
            .collect();
        ordered.sort_by_key(|i| (i.event_ts, i.event_id.clone()));
        let listed: Vec<&str> = ordered
            .iter()
            .take(MAX_CORRELATION_EVENT_IDS)
            .map(|i| i.event_id.as_str())
            .collect();
        let group: Vec<[String; 2]> = compiled.set.correlations[hit.correlation]
            .group_by
            .iter()
            .cloned()
            .zip(hit.group.iter().cloned())
            .map(|(f, v)| [f, v])
            .collect();
        rows.push(DetectionRow {
            id: detection_id(&refs),
            case_id: case_id.to_string(),
            file_id: last.file_id.clone(),
            scope: scope::CASE.into(),
            rule_id: rule_id.clone(),
            rule_content_sha256: meta.content_sha256.clone(),
            rule_title: meta.title.clone(),
            level: level_number(&meta.level),
            event_ts: hit.last_micros,
            computer: last.computer.clone(),
            channel: last.channel.clone(),
            event_code: last.event_code,
            record_id: last.record_id,
            event_ids: serde_json::to_string(&listed).unwrap_or_default(),
            tactics: comma_list(&meta.tactics),
            techniques: comma_list(&meta.techniques),
            matched_fields: serde_json::to_string(&group).unwrap_or_default(),
            is_correlation: true,
            correlated_event_count: hit.events.len() as i64,
            first_ts: hit.first_micros,
            ruleset_version: compiled.version,
            detected_at: now,
        });
    }
    rows.sort_by(|a, b| a.id.cmp(&b.id));
    rows.dedup_by(|a, b| a.id == b.id);
    rows
}
