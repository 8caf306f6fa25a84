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

pub mod client;
pub mod links;

use crate::delivery::Items;
use crate::source::{CaseSource, EventItem, IocItem};
use casescope_proto::integrations::v1 as pb;
use casescope_proto::ioc::v1::{IocType, Tlp};
use client::{IrisClient, IrisError, id_at, list_at};
use links::{Link, Links, item};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
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

/// Ids of the instance's reference lists, by lower-case name.
struct Lookups {
    ioc_types: HashMap<String, u64>,
    tlps: HashMap<String, u64>,
    asset_type: u64,
    category: u64,
    analysis_status: u64,
    customer: u64,
}

fn by_name(data: &Value, id_key: &str, name_key: &str) -> HashMap<String, u64> {
    list_at(data, "")
        .iter()
        .filter_map(|entry| {
            let id = id_at(entry, id_key)?;
            let name = entry.get(name_key)?.as_str()?.trim().to_ascii_lowercase();
            Some((name, id))
        })
        .collect()
}

/// The id of the first of `names` the list has, else its lowest id.
fn pick(list: &HashMap<String, u64>, names: &[&str]) -> Option<u64> {
    names
        .iter()
        .find_map(|n| list.get(*n).copied())
        .or_else(|| list.values().min().copied())
}

fn missing(what: &str, path: &str) -> PushError {
    PushError {
        message: format!("DFIR-IRIS lists no {what} ({path}); add one in IRIS"),
        http_status: 0,
        transient: false,
    }
}

/// IRIS IOC type names for one of ours, the best first (IRIS's types are MISP's).
fn ioc_type_names(ioc_type: i32) -> &'static [&'static str] {
    match IocType::try_from(ioc_type).unwrap_or(IocType::Other) {
        IocType::Ip => &["ip-any", "ip-dst", "ip-src"],
        IocType::Cidr => &["ip-any", "ip-dst"],
        IocType::Domain => &["domain"],
        IocType::Url => &["url", "uri"],
        IocType::Md5 => &["md5"],
        IocType::Sha1 => &["sha1"],
        IocType::Sha256 => &["sha256"],
        IocType::Sha512 => &["sha512"],
        IocType::Imphash => &["imphash"],
        IocType::FileName | IocType::ProcessName => &["filename"],
        IocType::FilePath => &["file-path", "filename"],
        IocType::UserName => &["account", "target-user"],
        IocType::RegistryKey => &["regkey"],
        IocType::Hostname => &["hostname"],
        IocType::Email => &["email", "email-src"],
        IocType::UserAgent => &["user-agent"],
        IocType::NamedPipe => &["named pipe"],
        IocType::Mutex => &["mutex"],
        IocType::CommandLine | IocType::ServiceName | IocType::Other | IocType::Unspecified => &[],
    }
}

fn tlp_names(tlp: i32) -> &'static [&'static str] {
    match Tlp::try_from(tlp).unwrap_or(Tlp::Unspecified) {
        Tlp::Clear => &["clear", "white"],
        Tlp::Green => &["green"],
        Tlp::AmberStrict => &["amber+strict", "amber"],
        Tlp::Red => &["red"],
        Tlp::Amber | Tlp::Unspecified => &["amber"],
    }
}

fn fingerprint(body: &Value) -> String {
    hex::encode(Sha256::digest(body.to_string().as_bytes()))
}

fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// `2026-01-02T03:04:05.123456Z` → `2026-01-02T03:04:05.123456` (UTC, no offset).
pub fn iris_date(datetime: &str) -> Option<String> {
    let parsed = chrono::DateTime::parse_from_rfc3339(datetime).ok()?;
    Some(
        parsed
            .with_timezone(&chrono::Utc)
            .format("%Y-%m-%dT%H:%M:%S%.6f")
            .to_string(),
    )
}

/// The IRIS timeline event of one of ours.
fn event_body(event: &EventItem, category: u64, assets: &[u64]) -> Option<Value> {
    let date = iris_date(&event.datetime)?;
    let mut title = event.provider.clone();
    if let Some(code) = event.event_code {
        title = format!("{title} {code}").trim().to_string();
    }
    if !event.computer.is_empty() {
        title = format!("{title} on {}", event.computer);
    }
    if title.chars().count() < 2 {
        title = format!("Event {}", event.event_id);
    }
    let mut content = String::new();
    if !event.tags.is_empty() {
        content.push_str(&format!("Tags: {}\n", event.tags.join(", ")));
    }
    if event.starred {
        content.push_str("Starred in CaseScope\n");
    }
    if !event.comments.is_empty() {
        content.push_str("\nComments:\n");
        for comment in &event.comments {
            content.push_str(&format!("- {}: {}\n", comment.author, comment.body));
        }
    }
    let mut tags = vec![format!("{EVENT_TAG_PREFIX}{}", event.event_id)];
    tags.extend(event.tags.iter().map(|t| t.replace(',', " ")));
    Some(json!({
        "event_title": clip(&title, 250),
        "event_date": date,
        "event_tz": "+00:00",
        "event_category_id": category,
        "event_assets": assets,
        "event_iocs": [],
        "event_content": clip(&content, 60_000),
        "event_raw": clip(&Value::Object(event.fields.clone()).to_string(), 60_000),
        "event_source": clip(&format!("CaseScope {} {}", event.channel, event.event_id), 250),
        "event_tags": tags.join(","),
        "event_in_summary": event.starred,
        "event_in_graph": true,
        "event_sync_iocs_assets": false,
    }))
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

    async fn lookups(&self) -> Result<Lookups, PushError> {
        let ioc_types = by_name(
            &self.iris.get("/manage/ioc-types/list", None).await?,
            "type_id",
            "type_name",
        );
        let tlps = by_name(
            &self.iris.get("/manage/tlp/list", None).await?,
            "tlp_id",
            "tlp_name",
        );
        let asset_types = by_name(
            &self.iris.get("/manage/asset-type/list", None).await?,
            "asset_id",
            "asset_name",
        );
        let categories = by_name(
            &self.iris.get("/manage/event-categories/list", None).await?,
            "id",
            "name",
        );
        let states = by_name(
            &self.iris.get("/manage/analysis-status/list", None).await?,
            "id",
            "name",
        );
        let customer = match self.settings.customer_id {
            0 => {
                let customers = by_name(
                    &self.iris.get("/manage/customers/list", None).await?,
                    "customer_id",
                    "customer_name",
                );
                pick(&customers, &[])
                    .ok_or_else(|| missing("customer", "/manage/customers/list"))?
            }
            id => u64::from(id),
        };
        Ok(Lookups {
            asset_type: pick(&asset_types, &["windows - computer", "windows computer"])
                .ok_or_else(|| missing("asset type", "/manage/asset-type/list"))?,
            category: pick(&categories, &["unspecified"])
                .ok_or_else(|| missing("event category", "/manage/event-categories/list"))?,
            analysis_status: pick(&states, &["unspecified"])
                .ok_or_else(|| missing("analysis status", "/manage/analysis-status/list"))?,
            ioc_types,
            tlps,
            customer,
        })
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

    async fn push_ioc(
        &mut self,
        cid: u64,
        ioc: &IocItem,
        lookups: &Lookups,
    ) -> Result<(), PushError> {
        let type_id = pick_exact(&lookups.ioc_types, ioc_type_names(ioc.ioc_type))
            .or_else(|| lookups.ioc_types.get("other").copied());
        let Some(type_id) = type_id else {
            self.items.failed += 1;
            if self.notes.len() < 5 {
                self.notes.push(format!(
                    "IOC {}: DFIR-IRIS has no matching IOC type and no \"other\"",
                    ioc.value
                ));
            }
            return Ok(());
        };
        let tlp = pick(&lookups.tlps, tlp_names(ioc.tlp))
            .ok_or_else(|| missing("TLP", "/manage/tlp/list"))?;
        let body = json!({
            "ioc_type_id": type_id,
            "ioc_tlp_id": tlp,
            "ioc_value": ioc.value,
            "ioc_description": ioc.description,
            "ioc_tags": ioc.labels.iter().map(|l| l.replace(',', " ")).collect::<Vec<_>>().join(","),
        });
        let print = fingerprint(&body);
        let answer = match self.links.get(item::IOC, &ioc.id).cloned() {
            Some(Link {
                remote_id: Some(_),
                fingerprint,
            }) if fingerprint == print => {
                self.items.succeeded += 1;
                return Ok(());
            }
            Some(Link {
                remote_id: Some(id),
                ..
            }) => self
                .iris
                .post(&format!("/case/ioc/update/{id}"), Some(cid), &body, true)
                .await
                .map(|_| Some(id)),
            // IRIS answers an add of a known type and value with the IOC it has.
            _ => self
                .iris
                .post("/case/ioc/add", Some(cid), &body, true)
                .await
                .map(|data| id_at(&data, "ioc_id")),
        };
        match answer {
            Ok(Some(id)) => {
                self.links
                    .set(
                        item::IOC,
                        &ioc.id,
                        Link {
                            remote_id: Some(id),
                            fingerprint: print,
                        },
                    )
                    .await
                    .map_err(local)?;
                self.items.succeeded += 1;
                Ok(())
            }
            Ok(None) => self.refused(
                &format!("IOC {}", ioc.value),
                IrisError {
                    message: "DFIR-IRIS gave no ioc_id".into(),
                    http_status: 200,
                    transient: false,
                    refusal: String::new(),
                },
            ),
            Err(error) => self.refused(&format!("IOC {}", ioc.value), error),
        }
    }

    /// The case's assets in IRIS by lower-case name (read once, when needed).
    async fn remote_assets(&self, cid: u64) -> Result<HashMap<String, u64>, PushError> {
        let data = self.iris.get("/case/assets/list", Some(cid)).await?;
        Ok(list_at(&data, "assets")
            .iter()
            .filter_map(|a| {
                Some((
                    a.get("asset_name")?.as_str()?.to_ascii_lowercase(),
                    id_at(a, "asset_id")?,
                ))
            })
            .collect())
    }

    async fn push_asset(
        &mut self,
        cid: u64,
        key: &str,
        name: &str,
        lookups: &Lookups,
        remote: &mut Option<HashMap<String, u64>>,
    ) -> Result<Option<u64>, PushError> {
        let body = json!({
            "asset_name": clip(name, 150),
            "asset_type_id": lookups.asset_type,
            "asset_description": format!("Host seen in CaseScope case {}", self.case_id),
            "analysis_status_id": lookups.analysis_status,
            "asset_tags": "casescope",
        });
        let print = fingerprint(&body);
        let linked = self.links.get(item::ASSET, key).cloned();
        let mut id = match &linked {
            Some(Link {
                remote_id: Some(id),
                fingerprint,
            }) => {
                if *fingerprint == print {
                    self.items.succeeded += 1;
                    return Ok(Some(*id));
                }
                Some(*id)
            }
            _ => None,
        };
        if id.is_none() && linked.is_some() {
            // An earlier creation's outcome is unknown: look before making another.
            if remote.is_none() {
                *remote = Some(self.remote_assets(cid).await?);
            }
            id = remote.as_ref().and_then(|r| r.get(key).copied());
        }
        let answer = match id {
            Some(id) => self
                .iris
                .post(&format!("/case/assets/update/{id}"), Some(cid), &body, true)
                .await
                .map(|_| Some(id)),
            None => {
                self.links
                    .set(
                        item::ASSET,
                        key,
                        Link {
                            remote_id: None,
                            fingerprint: String::new(),
                        },
                    )
                    .await
                    .map_err(local)?;
                match self
                    .iris
                    .post("/case/assets/add", Some(cid), &body, false)
                    .await
                {
                    Ok(data) => Ok(id_at(&data, "asset_id")),
                    // Made by someone else (or by us, unrecorded): adopt it.
                    Err(error) if error.refusal.contains("already exists") => {
                        let found = self.remote_assets(cid).await?;
                        let id = found.get(key).copied();
                        *remote = Some(found);
                        match id {
                            Some(id) => Ok(Some(id)),
                            None => Err(error),
                        }
                    }
                    Err(error) => Err(error),
                }
            }
        };
        match answer {
            Ok(Some(id)) => {
                self.links
                    .set(
                        item::ASSET,
                        key,
                        Link {
                            remote_id: Some(id),
                            fingerprint: print,
                        },
                    )
                    .await
                    .map_err(local)?;
                self.items.succeeded += 1;
                Ok(Some(id))
            }
            Ok(None) => {
                self.refused(
                    &format!("asset {name}"),
                    IrisError {
                        message: "DFIR-IRIS gave no asset_id".into(),
                        http_status: 200,
                        transient: false,
                        refusal: String::new(),
                    },
                )?;
                Ok(None)
            }
            Err(error) => {
                self.refused(&format!("asset {name}"), error)?;
                Ok(None)
            }
        }
    }

    /// The case's timeline events in IRIS that carry our tag, by event id.
    async fn remote_events(&self, cid: u64) -> Result<HashMap<String, u64>, PushError> {
        let data = self
            .iris
            .get("/case/timeline/events/list", Some(cid))
            .await?;
        let mut found = HashMap::new();
        for event in list_at(&data, "timeline") {
            let Some(id) = id_at(event, "event_id") else {
                continue;
            };
            let tags = event
                .get("event_tags")
                .and_then(Value::as_str)
                .unwrap_or("");
            for tag in tags.split(',') {
                if let Some(ours) = tag.trim().strip_prefix(EVENT_TAG_PREFIX) {
                    found.insert(ours.to_string(), id);
                }
            }
        }
        Ok(found)
    }

    async fn push_event(
        &mut self,
        cid: u64,
        event: &EventItem,
        lookups: &Lookups,
        assets: &[u64],
        remote: &mut Option<HashMap<String, u64>>,
    ) -> Result<(), PushError> {
        let Some(body) = event_body(event, lookups.category, assets) else {
            self.items.failed += 1;
            if self.notes.len() < 5 {
                self.notes.push(format!(
                    "event {}: its time {:?} is not RFC 3339",
                    event.event_id, event.datetime
                ));
            }
            return Ok(());
        };
        let print = fingerprint(&body);
        let key = event.event_id.as_str();
        let linked = self.links.get(item::EVENT, key).cloned();
        let mut id = match &linked {
            Some(Link {
                remote_id: Some(id),
                fingerprint,
            }) => {
                if *fingerprint == print {
                    self.items.succeeded += 1;
                    return Ok(());
                }
                Some(*id)
            }
            _ => None,
        };
        if id.is_none() && linked.is_some() {
            if remote.is_none() {
                *remote = Some(self.remote_events(cid).await?);
            }
            id = remote.as_ref().and_then(|r| r.get(key).copied());
        }
        let answer = match id {
            Some(id) => self
                .iris
                .post(
                    &format!("/case/timeline/events/update/{id}"),
                    Some(cid),
                    &body,
                    true,
                )
                .await
                .map(|_| Some(id)),
            None => {
                self.links
                    .set(
                        item::EVENT,
                        key,
                        Link {
                            remote_id: None,
                            fingerprint: String::new(),
                        },
                    )
                    .await
                    .map_err(local)?;
                self.iris
                    .post("/case/timeline/events/add", Some(cid), &body, false)
                    .await
                    .map(|data| id_at(&data, "event_id"))
            }
        };
        match answer {
            Ok(Some(id)) => {
                self.links
                    .set(
                        item::EVENT,
                        key,
                        Link {
                            remote_id: Some(id),
                            fingerprint: print,
                        },
                    )
                    .await
                    .map_err(local)?;
                self.items.succeeded += 1;
                Ok(())
            }
            Ok(None) => self.refused(
                &format!("event {key}"),
                IrisError {
                    message: "DFIR-IRIS gave no event_id".into(),
                    http_status: 200,
                    transient: false,
                    refusal: String::new(),
                },
            ),
            Err(error) => self.refused(&format!("event {key}"), error),
        }
    }
}

/// The first of `names` the list has (no fallback).
fn pick_exact(list: &HashMap<String, u64>, names: &[&str]) -> Option<u64> {
    names.iter().find_map(|n| list.get(*n).copied())
}

fn url_escape(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_go_without_offset_in_utc() {
        assert_eq!(
            iris_date("2026-01-02T03:04:05.123456Z").as_deref(),
            Some("2026-01-02T03:04:05.123456")
        );
        assert_eq!(
            iris_date("2026-01-02T05:04:05+02:00").as_deref(),
            Some("2026-01-02T03:04:05.000000")
        );
        assert_eq!(iris_date("yesterday"), None);
    }

    #[test]
    fn every_event_carries_our_tag() {
        let event = EventItem {
            event_id: "abc".into(),
            datetime: "2026-01-02T03:04:05Z".into(),
            provider: "Security".into(),
            event_code: Some(4624),
            computer: "WS01".into(),
            tags: vec!["lateral, movement".into()],
            ..Default::default()
        };
        let body = event_body(&event, 3, &[9]).unwrap();
        assert_eq!(body["event_tags"], "casescope:abc,lateral  movement");
        assert_eq!(body["event_title"], "Security 4624 on WS01");
        assert_eq!(body["event_tz"], "+00:00");
        assert_eq!(body["event_assets"], json!([9]));
    }
}
