//! The instance's reference lists (IOC types, TLPs, asset types, event categories,
//! analysis states, customers), read by name at the start of each push — their ids
//! differ between IRIS installs — and the names ours map to.

use super::client::{id_at, list_at};
use super::{Push, PushError};
use casescope_proto::ioc::v1::{IocType, Tlp};
use serde_json::Value;
use std::collections::HashMap;

/// Ids of the instance's reference lists, by lower-case name.
pub(super) struct Lookups {
    pub(super) ioc_types: HashMap<String, u64>,
    pub(super) tlps: HashMap<String, u64>,
    pub(super) asset_type: u64,
    pub(super) category: u64,
    pub(super) analysis_status: u64,
    pub(super) customer: u64,
}

pub(super) fn by_name(data: &Value, id_key: &str, name_key: &str) -> HashMap<String, u64> {
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
pub(super) fn pick(list: &HashMap<String, u64>, names: &[&str]) -> Option<u64> {
    names
        .iter()
        .find_map(|n| list.get(*n).copied())
        .or_else(|| list.values().min().copied())
}

pub(super) fn missing(what: &str, path: &str) -> PushError {
    PushError {
        message: format!("DFIR-IRIS lists no {what} ({path}); add one in IRIS"),
        http_status: 0,
        transient: false,
    }
}

/// IRIS IOC type names for one of ours, the best first (IRIS's types are MISP's).
pub(super) fn ioc_type_names(ioc_type: i32) -> &'static [&'static str] {
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

pub(super) fn tlp_names(tlp: i32) -> &'static [&'static str] {
    match Tlp::try_from(tlp).unwrap_or(Tlp::Unspecified) {
        Tlp::Clear => &["clear", "white"],
        Tlp::Green => &["green"],
        Tlp::AmberStrict => &["amber+strict", "amber"],
        Tlp::Red => &["red"],
        Tlp::Amber | Tlp::Unspecified => &["amber"],
    }
}

/// The first of `names` the list has (no fallback).
pub(super) fn pick_exact(list: &HashMap<String, u64>, names: &[&str]) -> Option<u64> {
    names.iter().find_map(|n| list.get(*n).copied())
}

impl Push<'_> {
    pub(super) async fn lookups(&self) -> Result<Lookups, PushError> {
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
}
