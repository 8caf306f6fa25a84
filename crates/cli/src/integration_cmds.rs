//! `integration add/list/test/delete`, `iris push`, `deliveries list/get/retry`: the
//! integrations service (docs/integrations.md).

use crate::client::{ServerArgs, rpc_error};
use anyhow::{Context, bail};
use casescope_proto::common::v1::{CaseId, IntegrationId, PageRequest};
use casescope_proto::integrations::v1 as pb;
use casescope_proto::integrations::v1::integrations_service_client::IntegrationsServiceClient;
use clap::{Subcommand, ValueEnum};
use std::io::BufRead;
use std::path::PathBuf;
use std::time::Duration;

type Client = IntegrationsServiceClient<casescope_proto::channel::GrpcChannel>;

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum Kind {
    Iris,
    Opencti,
    Webhook,
}

#[derive(Subcommand, Debug)]
pub enum IntegrationCommand {
    /// Configure an integration (administrators). The secret is read from stdin
    /// (--api-key-stdin) or given as a reference the server resolves (--secret-ref).
    Add {
        kind: Kind,
        #[arg(long)]
        name: String,
        /// Base URL, e.g. https://iris.example.org (no credentials in it).
        #[arg(long)]
        url: String,
        /// Read the API key / token / webhook signing key from the first line of stdin.
        #[arg(long, conflicts_with = "secret_ref")]
        api_key_stdin: bool,
        /// env:CASESCOPE_SECRET_<NAME> or file:<name> (in the server's secrets directory).
        #[arg(long)]
        secret_ref: Option<String>,
        /// Seconds per call (1–120; default 10).
        #[arg(long)]
        timeout: Option<u64>,
        /// Attempts per delivery (default 5).
        #[arg(long, default_value_t = 0)]
        attempts: u32,
        /// A PEM file of the CA the target's certificate is issued by.
        #[arg(long)]
        ca_file: Option<PathBuf>,
        /// DFIR-IRIS: the customer of pushed cases (default: the instance's first).
        #[arg(long, default_value_t = 0)]
        customer_id: u32,
        /// DFIR-IRIS: the classification of new cases (default: IRIS's).
        #[arg(long, default_value_t = 0)]
        classification_id: u32,
        /// Webhook: facts sent (detections, ioc-matches, file-status, reports, cases).
        #[arg(long = "topic", value_name = "TOPIC")]
        topics: Vec<String>,
    },
    /// Integrations, by name.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Call the target once (authenticated, side-effect free) and say what happened.
    Test { integration: String },
    /// Delete a configuration (its deliveries stay in the log).
    Delete { integration: String },
}

#[derive(Subcommand, Debug)]
pub enum IrisCommand {
    /// Push a case to DFIR-IRIS: the case, its IOCs, hosts and tagged/starred events with
    /// comments. A second push updates what changed; nothing is duplicated.
    Push {
        case: String,
        /// The DFIR-IRIS integration (name or id); optional when there is one.
        #[arg(long)]
        integration: Option<String>,
        #[arg(long)]
        no_iocs: bool,
        #[arg(long)]
        no_timeline: bool,
        /// Only events with these tags (default: every tag, and starred events).
        #[arg(long = "tag", value_name = "TAG")]
        tags: Vec<String>,
        /// Push into this IRIS case instead of the linked (or a new) one.
        #[arg(long)]
        iris_case: Option<u64>,
        /// Wait until the delivery succeeded or failed.
        #[arg(long)]
        wait: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum OpenctiCommand {
    /// Look a case's IOCs up in OpenCTI (500 values per query) and record what it knows
    /// on each IOC (labels, score, indicators, related threats), found or not.
    Enrich {
        case: String,
        /// The OpenCTI integration (name or id); optional when there is one.
        #[arg(long)]
        integration: Option<String>,
        /// Only these IOCs (ids; default: every enabled IOC of the case).
        #[arg(long = "ioc", value_name = "IOC_ID")]
        iocs: Vec<String>,
        /// Look up IOCs that were enriched before, too.
        #[arg(long)]
        force: bool,
        /// Wait until the delivery succeeded or failed.
        #[arg(long)]
        wait: bool,
    },
    /// Import OpenCTI's indicators as IOCs of a case (through the IOC import: duplicates
    /// and unreadable patterns counted); the new IOCs are hunted at once.
    Import {
        case: String,
        #[arg(long)]
        integration: Option<String>,
        /// OpenCTI full-text search.
        #[arg(long, default_value = "")]
        search: String,
        /// Only indicators with one of these labels (repeatable).
        #[arg(long = "label", value_name = "LABEL")]
        labels: Vec<String>,
        /// Only these main observable types, e.g. IPv4-Addr, Domain-Name, StixFile.
        #[arg(long = "type", value_name = "TYPE")]
        types: Vec<String>,
        /// 0-100 (default: the integration's minimum).
        #[arg(long, default_value_t = 0)]
        min_confidence: u32,
        /// Indicators fetched at most (default 10,000).
        #[arg(long, default_value_t = 0)]
        max: u32,
        #[arg(long)]
        wait: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum DeliveriesCommand {
    /// The delivery log, newest first.
    List {
        /// Deliveries of this case (required unless you are an administrator).
        #[arg(long)]
        case: Option<String>,
        #[arg(long)]
        integration: Option<String>,
        /// queued, in-progress, retry-scheduled, succeeded, failed (repeatable).
        #[arg(long = "status", value_name = "STATUS")]
        statuses: Vec<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// One delivery.
    Get {
        id: String,
        #[arg(long)]
        case: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Queue a failed delivery again (attempts from zero).
    Retry {
        id: String,
        #[arg(long)]
        case: Option<String>,
    },
}

fn case_ref(case: &str) -> Option<CaseId> {
    Some(CaseId {
        value: case.to_string(),
    })
}

fn word(name: &str, prefix: &str) -> String {
    name.strip_prefix(prefix)
        .unwrap_or(name)
        .to_ascii_lowercase()
        .replace('_', "-")
}

fn kind_word(kind: i32) -> String {
    pb::IntegrationKind::try_from(kind)
        .map(|k| word(k.as_str_name(), "INTEGRATION_KIND_"))
        .unwrap_or_default()
}

fn status_word(status: i32) -> String {
    pb::DeliveryStatus::try_from(status)
        .map(|s| word(s.as_str_name(), "DELIVERY_STATUS_"))
        .unwrap_or_default()
}

fn delivery_kind_word(kind: i32) -> String {
    pb::DeliveryKind::try_from(kind)
        .map(|k| word(k.as_str_name(), "DELIVERY_KIND_"))
        .unwrap_or_default()
}

fn status_of(text: &str) -> anyhow::Result<i32> {
    let upper = format!(
        "DELIVERY_STATUS_{}",
        text.trim().to_ascii_uppercase().replace('-', "_")
    );
    pb::DeliveryStatus::from_str_name(&upper)
        .filter(|s| *s != pb::DeliveryStatus::Unspecified)
        .map(|s| s as i32)
        .with_context(|| {
            format!(
                "--status {text:?}: use queued, in-progress, retry-scheduled, succeeded or failed"
            )
        })
}

fn topic_of(text: &str) -> anyhow::Result<i32> {
    Ok(match text.trim().to_ascii_lowercase().as_str() {
        "detections" => pb::ExportTopic::Detections,
        "ioc-matches" | "ioc_matches" => pb::ExportTopic::IocMatches,
        "file-status" | "file_status" => pb::ExportTopic::FileStatus,
        "reports" => pb::ExportTopic::Reports,
        "cases" => pb::ExportTopic::Cases,
        other => {
            bail!("--topic {other:?}: use detections, ioc-matches, file-status, reports or cases")
        }
    } as i32)
}

fn time_text(ts: Option<&prost_types::Timestamp>) -> String {
    ts.map(|t| {
        casescope_proto::time::micros_to_rfc3339(casescope_proto::time::timestamp_to_micros(t))
    })
    .unwrap_or_default()
}

fn delivery_json(d: &pb::Delivery) -> serde_json::Value {
    serde_json::json!({
        "id": d.id.as_ref().map(|i| i.value.clone()),
        "integration_id": d.integration_id.as_ref().map(|i| i.value.clone()),
        "kind": delivery_kind_word(d.kind),
        "case_id": d.case_id.as_ref().map(|c| c.value.clone()),
        "target": d.target,
        "status": status_word(d.status),
        "attempts": d.attempts,
        "max_attempts": d.max_attempts,
        "last_error": d.last_error,
        "last_http_status": d.last_http_status,
        "items_total": d.items_total,
        "items_succeeded": d.items_succeeded,
        "items_failed": d.items_failed,
        "remote_reference": d.remote_reference,
        "created_at": time_text(d.created_at.as_ref()),
        "next_attempt_at": time_text(d.next_attempt_at.as_ref()),
        "completed_at": time_text(d.completed_at.as_ref()),
    })
}

fn print_delivery(d: &pb::Delivery) {
    let id = d.id.as_ref().map(|i| i.value.as_str()).unwrap_or("");
    println!("delivery {id}");
    println!("kind     {}", delivery_kind_word(d.kind));
    println!("target   {}", d.target);
    println!(
        "status   {} (attempt {} of {})",
        status_word(d.status),
        d.attempts,
        d.max_attempts
    );
    println!(
        "items    {} ({} done, {} refused)",
        d.items_total, d.items_succeeded, d.items_failed
    );
    if !d.remote_reference.is_empty() {
        println!("remote   {}", d.remote_reference);
    }
    if !d.last_error.is_empty() {
        println!("error    {}", d.last_error);
    }
    if d.next_attempt_at.is_some() {
        println!("next     {}", time_text(d.next_attempt_at.as_ref()));
    }
}

/// Every integration (pages of 200).
async fn all(client: &mut Client) -> anyhow::Result<Vec<pb::Integration>> {
    let mut out = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = client
            .list_integrations(pb::ListIntegrationsRequest {
                page: Some(PageRequest {
                    page_size: 200,
                    cursor,
                }),
                kind: 0,
            })
            .await
            .map_err(rpc_error)?
            .into_inner();
        out.extend(page.integrations);
        cursor = page.page.map(|p| p.next_cursor).unwrap_or_default();
        if cursor.is_empty() {
            return Ok(out);
        }
    }
}

/// The id of the integration named or identified by `which` (of `kind` when given;
/// the only one of that kind when `which` is `None`).
async fn resolve(
    client: &mut Client,
    which: Option<&str>,
    kind: Option<pb::IntegrationKind>,
) -> anyhow::Result<Option<IntegrationId>> {
    let every = all(client).await?;
    let candidates: Vec<&pb::Integration> = every
        .iter()
        .filter(|i| kind.is_none_or(|k| i.kind == k as i32))
        .filter(|i| {
            which.is_none_or(|w| i.name == w || i.id.as_ref().is_some_and(|id| id.value == w))
        })
        .collect();
    match (candidates.as_slice(), which) {
        ([one], _) => Ok(one.id.clone()),
        ([], Some(w)) => bail!("no integration is named {w:?}"),
        ([], None) => {
            bail!("no integration of that kind is configured (casescope integration add)")
        }
        (_, _) => bail!("several integrations fit; name one with --integration"),
    }
}

fn read_secret_line() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read the secret from stdin")?;
    let secret = line.trim_end_matches(['\r', '\n']).to_string();
    if secret.is_empty() {
        bail!("--api-key-stdin: stdin gave an empty line");
    }
    Ok(secret)
}

pub async fn run_integration(
    server: &ServerArgs,
    command: IntegrationCommand,
) -> anyhow::Result<()> {
    let mut client = IntegrationsServiceClient::new(crate::session::connect(server, None).await?);
    match command {
        IntegrationCommand::Add {
            kind,
            name,
            url,
            api_key_stdin,
            secret_ref,
            timeout,
            attempts,
            ca_file,
            customer_id,
            classification_id,
            topics,
        } => {
            let secret = if api_key_stdin {
                Some(pb::secret_input::Source::Value(read_secret_line()?))
            } else {
                secret_ref.map(pb::secret_input::Source::Reference)
            };
            let ca = match ca_file {
                Some(path) => std::fs::read_to_string(&path)
                    .with_context(|| format!("cannot read {}", path.display()))?,
                None => String::new(),
            };
            let (kind, settings) = match kind {
                Kind::Iris => (
                    pb::IntegrationKind::DfirIris,
                    pb::integration_settings::KindSettings::Iris(pb::IrisSettings {
                        customer_id,
                        classification_id,
                    }),
                ),
                Kind::Opencti => (
                    pb::IntegrationKind::Opencti,
                    pb::integration_settings::KindSettings::Opencti(pb::OpenCtiSettings::default()),
                ),
                Kind::Webhook => (
                    pb::IntegrationKind::Webhook,
                    pb::integration_settings::KindSettings::Webhook(pb::WebhookSettings {
                        topics: topics
                            .iter()
                            .map(|t| topic_of(t))
                            .collect::<anyhow::Result<_>>()?,
                        ..Default::default()
                    }),
                ),
            };
            let created = client
                .create_integration(pb::CreateIntegrationRequest {
                    kind: kind as i32,
                    name,
                    base_url: url,
                    secret: secret.map(|s| pb::SecretInput { source: Some(s) }),
                    timeout: timeout.map(|s| prost_types::Duration {
                        seconds: s as i64,
                        nanos: 0,
                    }),
                    max_attempts: attempts,
                    enabled: Some(true),
                    ca_certificate_pem: ca,
                    settings: Some(pb::IntegrationSettings {
                        kind_settings: Some(settings),
                    }),
                })
                .await
                .map_err(rpc_error)?
                .into_inner();
            println!(
                "{}\t{}\t{}",
                created.id.map(|i| i.value).unwrap_or_default(),
                kind_word(created.kind),
                created.name
            );
        }
        IntegrationCommand::List { json } => {
            let every = all(&mut client).await?;
            if json {
                let list: Vec<_> = every
                    .iter()
                    .map(|i| {
                        serde_json::json!({
                            "id": i.id.as_ref().map(|x| x.value.clone()),
                            "kind": kind_word(i.kind),
                            "name": i.name,
                            "base_url": i.base_url,
                            "secret_set": i.secret_set,
                            "enabled": i.enabled,
                            "last_error": i.health.as_ref().map(|h| h.last_error.clone()),
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                for i in &every {
                    println!(
                        "{}\t{}\t{}\t{}\tsecret {}{}",
                        i.id.as_ref().map(|x| x.value.as_str()).unwrap_or(""),
                        kind_word(i.kind),
                        i.name,
                        i.base_url,
                        if i.secret_set { "set" } else { "unset" },
                        if i.enabled { "" } else { "\tdisabled" }
                    );
                }
            }
        }
        IntegrationCommand::Test { integration } => {
            let id = resolve(&mut client, Some(&integration), None).await?;
            let answer = client
                .test_integration(pb::TestIntegrationRequest { id })
                .await
                .map_err(rpc_error)?
                .into_inner();
            let latency = answer
                .latency
                .map(|d| d.seconds as f64 + f64::from(d.nanos) / 1e9)
                .unwrap_or_default();
            println!(
                "{} in {:.0} ms{}{}",
                if answer.ok { "ok" } else { "failed" },
                latency * 1000.0,
                if answer.remote_version.is_empty() {
                    String::new()
                } else {
                    format!(", version {}", answer.remote_version)
                },
                if answer.message.is_empty() {
                    String::new()
                } else {
                    format!(": {}", answer.message)
                }
            );
            if !answer.ok {
                bail!("the integration test failed");
            }
        }
        IntegrationCommand::Delete { integration } => {
            let id = resolve(&mut client, Some(&integration), None).await?;
            client
                .delete_integration(pb::DeleteIntegrationRequest { id })
                .await
                .map_err(rpc_error)?;
            println!("deleted {integration}");
        }
    }
    Ok(())
}

/// Polls `delivery` until it succeeded or failed.
async fn wait(
    client: &mut Client,
    case: &str,
    delivery: pb::Delivery,
) -> anyhow::Result<pb::Delivery> {
    let mut current = delivery;
    loop {
        let status = pb::DeliveryStatus::try_from(current.status).unwrap_or_default();
        if matches!(
            status,
            pb::DeliveryStatus::Succeeded | pb::DeliveryStatus::Failed
        ) {
            return Ok(current);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        current = client
            .get_delivery(pb::GetDeliveryRequest {
                id: current.id.clone(),
                case_id: case_ref(case),
            })
            .await
            .map_err(rpc_error)?
            .into_inner();
    }
}

pub async fn run_iris(server: &ServerArgs, command: IrisCommand) -> anyhow::Result<()> {
    let mut client = IntegrationsServiceClient::new(crate::session::connect(server, None).await?);
    match command {
        IrisCommand::Push {
            case,
            integration,
            no_iocs,
            no_timeline,
            tags,
            iris_case,
            wait: wait_for_it,
        } => {
            let integration_id = resolve(
                &mut client,
                integration.as_deref(),
                Some(pb::IntegrationKind::DfirIris),
            )
            .await?;
            let delivery = client
                .push_case_to_iris(pb::PushCaseToIrisRequest {
                    case_id: case_ref(&case),
                    integration_id,
                    include_iocs: !no_iocs,
                    include_tagged_timeline: !no_timeline,
                    timeline_tags: tags,
                    iris_case_id: iris_case,
                })
                .await
                .map_err(rpc_error)?
                .into_inner();
            finish(&mut client, &case, delivery, wait_for_it, "push").await
        }
    }
}

/// Prints a queued delivery, or waits for it and prints the outcome.
async fn finish(
    client: &mut Client,
    case: &str,
    delivery: pb::Delivery,
    wait_for_it: bool,
    what: &str,
) -> anyhow::Result<()> {
    if !wait_for_it {
        println!(
            "{}\t{}",
            delivery.id.map(|i| i.value).unwrap_or_default(),
            status_word(delivery.status)
        );
        return Ok(());
    }
    let done = wait(client, case, delivery).await?;
    print_delivery(&done);
    if done.status == pb::DeliveryStatus::Failed as i32 {
        bail!("the {what} failed");
    }
    Ok(())
}

pub async fn run_opencti(server: &ServerArgs, command: OpenctiCommand) -> anyhow::Result<()> {
    let mut client = IntegrationsServiceClient::new(crate::session::connect(server, None).await?);
    match command {
        OpenctiCommand::Enrich {
            case,
            integration,
            iocs,
            force,
            wait: wait_for_it,
        } => {
            let integration_id = resolve(
                &mut client,
                integration.as_deref(),
                Some(pb::IntegrationKind::Opencti),
            )
            .await?;
            let delivery = client
                .enrich_iocs(pb::EnrichIocsRequest {
                    case_id: case_ref(&case),
                    integration_id,
                    ioc_ids: iocs
                        .into_iter()
                        .map(|value| casescope_proto::common::v1::IocId { value })
                        .collect(),
                    force,
                })
                .await
                .map_err(rpc_error)?
                .into_inner();
            finish(&mut client, &case, delivery, wait_for_it, "enrichment").await
        }
        OpenctiCommand::Import {
            case,
            integration,
            search,
            labels,
            types,
            min_confidence,
            max,
            wait: wait_for_it,
        } => {
            let integration_id = resolve(
                &mut client,
                integration.as_deref(),
                Some(pb::IntegrationKind::Opencti),
            )
            .await?;
            let delivery = client
                .import_open_cti_indicators(pb::ImportOpenCtiIndicatorsRequest {
                    case_id: case_ref(&case),
                    integration_id,
                    search,
                    labels,
                    observable_types: types,
                    min_confidence,
                    valid_from: None,
                    max_indicators: max,
                })
                .await
                .map_err(rpc_error)?
                .into_inner();
            finish(&mut client, &case, delivery, wait_for_it, "import").await
        }
    }
}

pub async fn run_deliveries(server: &ServerArgs, command: DeliveriesCommand) -> anyhow::Result<()> {
    let mut client = IntegrationsServiceClient::new(crate::session::connect(server, None).await?);
    match command {
        DeliveriesCommand::List {
            case,
            integration,
            statuses,
            limit,
            json,
        } => {
            if limit == 0 || limit > 1000 {
                bail!("--limit: 1 to 1000");
            }
            let integration_id = match integration {
                Some(which) => resolve(&mut client, Some(&which), None).await?,
                None => None,
            };
            let list = client
                .list_deliveries(pb::ListDeliveriesRequest {
                    page: Some(PageRequest {
                        page_size: limit,
                        cursor: String::new(),
                    }),
                    integration_id,
                    case_id: case.as_deref().and_then(case_ref),
                    statuses: statuses
                        .iter()
                        .map(|s| status_of(s))
                        .collect::<anyhow::Result<_>>()?,
                    kinds: Vec::new(),
                    time_range: None,
                })
                .await
                .map_err(rpc_error)?
                .into_inner();
            if json {
                let all: Vec<_> = list.deliveries.iter().map(delivery_json).collect();
                println!("{}", serde_json::to_string_pretty(&all)?);
            } else {
                for d in &list.deliveries {
                    println!(
                        "{}\t{}\t{}\t{}/{}\t{}\t{}",
                        d.id.as_ref().map(|i| i.value.as_str()).unwrap_or(""),
                        delivery_kind_word(d.kind),
                        status_word(d.status),
                        d.items_succeeded,
                        d.items_total,
                        time_text(d.created_at.as_ref()),
                        d.last_error
                    );
                }
            }
        }
        DeliveriesCommand::Get { id, case, json } => {
            let delivery = client
                .get_delivery(pb::GetDeliveryRequest {
                    id: Some(pb::DeliveryId { value: id }),
                    case_id: case.as_deref().and_then(case_ref),
                })
                .await
                .map_err(rpc_error)?
                .into_inner();
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&delivery_json(&delivery))?
                );
            } else {
                print_delivery(&delivery);
            }
        }
        DeliveriesCommand::Retry { id, case } => {
            let delivery = client
                .retry_delivery(pb::RetryDeliveryRequest {
                    id: Some(pb::DeliveryId { value: id }),
                    case_id: case.as_deref().and_then(case_ref),
                })
                .await
                .map_err(rpc_error)?
                .into_inner();
            print_delivery(&delivery);
        }
    }
    Ok(())
}
