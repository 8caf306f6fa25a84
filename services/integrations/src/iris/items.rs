//! Pushing one item — an IOC, an asset (a host), a timeline event — as an update of its
//! linked IRIS item when it changed, or a creation recorded first as an intent; an
//! intent without an outcome is looked for (assets by name, events by our tag) before
//! anything is made again.

use super::body::{clip, event_body, fingerprint};
use super::client::{IrisError, id_at, list_at};
use super::links::{Link, item};
use super::lookups::{Lookups, ioc_type_names, missing, pick, pick_exact, tlp_names};
use super::{EVENT_TAG_PREFIX, Push, PushError, local};
use crate::source::{EventItem, IocItem};
use serde_json::{Value, json};
use std::collections::HashMap;

impl Push<'_> {
    pub(super) async fn push_ioc(
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
    pub(super) async fn remote_assets(&self, cid: u64) -> Result<HashMap<String, u64>, PushError> {
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

    pub(super) async fn push_asset(
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
    pub(super) async fn remote_events(&self, cid: u64) -> Result<HashMap<String, u64>, PushError> {
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

    pub(super) async fn push_event(
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
