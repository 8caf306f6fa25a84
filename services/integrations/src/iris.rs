//! `PushCaseToIris`: a case, its IOCs, its hosts (as assets) and its tagged and starred
//! events with their comments (as timeline events), pushed to DFIR-IRIS so that a
//! second push updates and never duplicates (docs/integrations.md "DFIR-IRIS push").
//!
//! - Ids of IOC types, TLPs, asset types, event categories and analysis states are
//!   looked up from the instance by name, never assumed.
//! - Every item pushed is linked to its IRIS id ([`links`]); a re-push sends only what
//!   changed (the fingerprint of what was sent differs) as an update.
//! - IRIS de-duplicates IOCs (an add of a known type and value answers the existing
//!   one) but not timeline events, and refuses a second asset of a name: a creation is
//!   recorded as an intent before it is sent, and a push that finds intents without an
//!   outcome (its predecessor died, or a call timed out) first looks for what it made —
//!   events by the `casescope:<event id>` tag every pushed event carries, assets by
//!   name, the case by its SOC id (our case id).
//! - Event times go as IRIS expects them: `event_date` without an offset and
//!   `event_tz` `+00:00` (our times are UTC).

mod body;
pub mod client;
mod items;
pub mod links;
mod lookups;

pub use body::iris_date;

use crate::delivery::Items;
use crate::source::CaseSource;
use body::{clip, fingerprint};
use casescope_proto::integrations::v1 as pb;
use client::{IrisClient, IrisError, id_at, list_at};
use links::{Link, Links, item};
use lookups::Lookups;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};

/// The tag that marks a pushed timeline event as ours: `casescope:<event id>`.
pub const EVENT_TAG_PREFIX: &str = "casescope:";

/// Bounds of one push.
#[derive(Debug, Clone)]
pub struct PushLimits {
    pub max_iocs: usize,
    pub max_events: usize,
    /// Hosts pushed as assets at most.
    pub max_assets: usize,
}

impl Default for PushLimits {
    fn default() -> Self {
        Self {
            max_iocs: 10_000,
            max_events: 5_000,
            max_assets: 1_000,
        }
    }
}

/// Why a push stopped.
#[derive(Debug, Clone)]
pub struct PushError {
    pub message: String,
    pub http_status: u32,
    pub transient: bool,
}

impl From<IrisError> for PushError {
    fn from(error: IrisError) -> Self {
        Self {
            message: error.message,
            http_status: error.http_status,
            transient: error.transient,
        }
    }
}

impl From<crate::source::SourceError> for PushError {
    fn from(error: crate::source::SourceError) -> Self {
        Self {
            message: error.message,
            http_status: 0,
            transient: error.transient,
        }
    }
}

fn local(message: String) -> PushError {
    // The database or the lease: another attempt may do better.
    PushError {
        message,
        http_status: 0,
        transient: true,
    }
}

/// What a push did.
#[derive(Debug, Clone, Default)]
pub struct PushOutcome {
    pub items: Items,
    /// The IRIS case id.
    pub iris_case_id: u64,
    /// Items IRIS refused, with the first reasons; events left out by the limit.
    pub notes: Vec<String>,
}

/// Writes a push's progress (fenced by its lease).
#[async_trait::async_trait]
pub trait Progress: Send + Sync {
    async fn report(&self, items: Items, remote_reference: &str) -> Result<(), String>;
    /// Whether the push must stop (its lease was lost or the delivery deleted).
    fn stopped(&self) -> bool;
}

/// One push.
pub struct Push<'a> {
    pub iris: IrisClient,
    pub links: Links,
    pub source: &'a dyn CaseSource,
    pub progress: &'a dyn Progress,
    pub limits: PushLimits,
    pub case_id: String,
    pub request: pb::PushCaseToIrisRequest,
    pub settings: pb::IrisSettings,
    items: Items,
    notes: Vec<String>,
    refused: u64,
}

impl<'a> Push<'a> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        iris: IrisClient,
        links: Links,
        source: &'a dyn CaseSource,
        progress: &'a dyn Progress,
        limits: PushLimits,
        case_id: String,
        request: pb::PushCaseToIrisRequest,
        settings: pb::IrisSettings,
    ) -> Self {
        Self {
            iris,
            links,
            source,
            progress,
            limits,
            case_id,
            request,
            settings,
            items: Items::default(),
            notes: Vec::new(),
            refused: 0,
        }
    }

    fn check_stopped(&self) -> Result<(), PushError> {
        if self.progress.stopped() {
            Err(local("the delivery's lease was lost".into()))
        } else {
            Ok(())
        }
    }

    /// Counts an item IRIS refused (a permanent, per-item error) and goes on.
    fn refused(&mut self, what: &str, error: IrisError) -> Result<(), PushError> {
        if error.transient {
            return Err(error.into());
        }
        self.items.failed += 1;
        self.refused += 1;
        if self.notes.len() < 5 {
            self.notes.push(format!("{what}: {}", error.message));
        }
        Ok(())
    }

    async fn report(&self, iris_case: u64) -> Result<(), PushError> {
        self.progress
            .report(self.items, &iris_case.to_string())
            .await
            .map_err(local)
    }

    /// Runs the push.
    pub async fn run(mut self) -> Result<PushOutcome, PushError> {
        let case = self.source.case(&self.case_id).await?;
        let lookups = self.lookups().await?;
        let iris_case = self.link_case(&case, &lookups).await?;
        self.items.total = 1;
        self.items.succeeded = 1;
        self.report(iris_case).await?;

        let events = if self.request.include_tagged_timeline {
            let events = self
                .source
                .events(
                    &self.case_id,
                    &self.request.timeline_tags,
                    self.limits.max_events,
                )
                .await?;
            if events.left_out > 0 {
                self.notes.push(format!(
                    "{} more tagged events were not pushed (at most {} per push)",
                    events.left_out, self.limits.max_events
                ));
            }
            events.items
        } else {
            Vec::new()
        };
        let iocs = if self.request.include_iocs {
            let (iocs, more) = self
                .source
                .iocs(&self.case_id, self.limits.max_iocs)
                .await?;
            if more {
                self.notes.push(format!(
                    "the case has more than {} IOCs; the first {} were pushed",
                    self.limits.max_iocs, self.limits.max_iocs
                ));
            }
            iocs
        } else {
            Vec::new()
        };
        // Hosts: the case's most frequent, and every host of a pushed event.
        let mut hosts: BTreeMap<String, String> = BTreeMap::new();
        for host in self.source.hosts(&self.case_id).await? {
            hosts.entry(host.to_ascii_lowercase()).or_insert(host);
        }
        for event in &events {
            if !event.computer.is_empty() {
                hosts
                    .entry(event.computer.to_ascii_lowercase())
                    .or_insert_with(|| event.computer.clone());
            }
        }
        let hosts: Vec<(String, String)> = hosts.into_iter().take(self.limits.max_assets).collect();
        self.items.total += (iocs.len() + hosts.len() + events.len()) as i64;

        for ioc in &iocs {
            self.check_stopped()?;
            self.push_ioc(iris_case, ioc, &lookups).await?;
            if (self.items.succeeded + self.items.failed) % 100 == 0 {
                self.report(iris_case).await?;
            }
        }
        let mut asset_ids: HashMap<String, u64> = HashMap::new();
        let mut remote_assets: Option<HashMap<String, u64>> = None;
        for (key, name) in &hosts {
            self.check_stopped()?;
            if let Some(id) = self
                .push_asset(iris_case, key, name, &lookups, &mut remote_assets)
                .await?
            {
                asset_ids.insert(key.clone(), id);
            }
        }
        self.report(iris_case).await?;
        let mut remote_events: Option<HashMap<String, u64>> = None;
        for event in &events {
            self.check_stopped()?;
            let assets: Vec<u64> = asset_ids
                .get(&event.computer.to_ascii_lowercase())
                .copied()
                .into_iter()
                .collect();
            self.push_event(iris_case, event, &lookups, &assets, &mut remote_events)
                .await?;
            if (self.items.succeeded + self.items.failed) % 50 == 0 {
                self.report(iris_case).await?;
            }
        }
        self.report(iris_case).await?;
        if self.refused > 5 {
            self.notes
                .push(format!("{} items refused in all", self.refused));
        }
        Ok(PushOutcome {
            items: self.items,
            iris_case_id: iris_case,
            notes: self.notes,
        })
    }

    /// The IRIS case: the one asked for, the one linked, or a new one.
    async fn link_case(
        &mut self,
        case: &crate::source::CaseInfo,
        lookups: &Lookups,
    ) -> Result<u64, PushError> {
        let name = if case.name.chars().count() < 2 {
            format!("CaseScope case {}", self.case_id)
        } else {
            clip(&case.name, 200)
        };
        let description = if case.description.chars().count() < 2 {
            format!("Pushed from CaseScope (case {}).", self.case_id)
        } else {
            case.description.clone()
        };
        let mut body = json!({
            "case_name": name,
            "case_description": description,
            "case_soc_id": self.case_id,
            "case_customer": lookups.customer,
        });
        if self.settings.classification_id != 0 {
            body["classification_id"] = json!(self.settings.classification_id);
        }
        let print = fingerprint(&body);
        let linked = self.links.get(item::CASE, &self.case_id).cloned();
        if let Some(asked) = self.request.iris_case_id {
            if linked.as_ref().and_then(|l| l.remote_id) != Some(asked) {
                self.links.forget_items().await.map_err(local)?;
            }
            self.update_case(asked, &body).await?;
            self.links
                .set(
                    item::CASE,
                    &self.case_id.clone(),
                    Link {
                        remote_id: Some(asked),
                        fingerprint: print,
                    },
                )
                .await
                .map_err(local)?;
            return Ok(asked);
        }
        let key = self.case_id.clone();
        match linked {
            Some(Link {
                remote_id: Some(id),
                fingerprint,
            }) => {
                if fingerprint != print {
                    self.update_case(id, &body).await?;
                    self.links
                        .set(
                            item::CASE,
                            &key,
                            Link {
                                remote_id: Some(id),
                                fingerprint: print,
                            },
                        )
                        .await
                        .map_err(local)?;
                }
                Ok(id)
            }
            uncertain => {
                if uncertain.is_some()
                    && let Some(id) = self.find_case().await?
                {
                    self.links
                        .set(
                            item::CASE,
                            &key,
                            Link {
                                remote_id: Some(id),
                                fingerprint: String::new(),
                            },
                        )
                        .await
                        .map_err(local)?;
                    self.update_case(id, &body).await?;
                    return Ok(id);
                }
                self.links
                    .set(
                        item::CASE,
                        &key,
                        Link {
                            remote_id: None,
                            fingerprint: String::new(),
                        },
                    )
                    .await
                    .map_err(local)?;
                let data = self
                    .iris
                    .post("/manage/cases/add", None, &body, false)
                    .await?;
                let id = id_at(&data, "case_id").ok_or_else(|| PushError {
                    message: "DFIR-IRIS created the case but gave no case_id".into(),
                    http_status: 200,
                    transient: false,
                })?;
                self.links
                    .set(
                        item::CASE,
                        &key,
                        Link {
                            remote_id: Some(id),
                            fingerprint: print,
                        },
                    )
                    .await
                    .map_err(local)?;
                Ok(id)
            }
        }
    }

    async fn update_case(&self, id: u64, body: &Value) -> Result<(), PushError> {
        let update = json!({
            "case_name": body["case_name"],
            "case_description": body["case_description"],
            "case_soc_id": body["case_soc_id"],
        });
        self.iris
            .post(&format!("/manage/cases/update/{id}"), None, &update, true)
            .await?;
        Ok(())
    }

    /// The IRIS case whose SOC id is our case id, if there is one.
    async fn find_case(&self) -> Result<Option<u64>, PushError> {
        let path = format!(
            "/manage/cases/filter?case_soc_id={}&per_page=10",
            url_escape(&self.case_id)
        );
        let data = self.iris.get(&path, None).await?;
        Ok(list_at(&data, "cases")
            .iter()
            .find(|c| c.get("case_soc_id").and_then(Value::as_str) == Some(&self.case_id))
            .and_then(|c| id_at(c, "case_id")))
    }
}

fn url_escape(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}
