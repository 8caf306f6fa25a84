//! `make bench-gateway`: what the gateway's checks add to a cheap RPC in all-in-one mode.
//!
//! One process serves the real cases service (SQLite) twice over loopback HTTP/2: bare
//! (the baseline, measured in the same run) and behind the gateway exactly as
//! `casescope serve` puts it (the `enforce` layer with its real authenticator, rate
//! limiter, case-role lookup and audit log on SQLite, and the service guarded by the
//! internal key). `GetCase` is called one at a time, the arms interleaved round by round;
//! the medians, p90/p99 and the difference of the medians are printed, for an access
//! token (a signed JWT) and an API token (looked up by hash, and audited: every call
//! made with an API token is appended to the hash-chained audit log). Not a test: it
//! asserts nothing, it measures.

use anyhow::{Context, anyhow};
use casescope_bus::{InProcessBus, Outbox};
use casescope_db::{Database, DbOptions};
use casescope_gateway::policy::GlobalRole;
use casescope_gateway::tokens::{KeySet, generate_private_pem};
use casescope_gateway::{
    ALL_MIGRATIONS, ApiTokens, AuditLog, Authenticator, CaseRole, CaseRoles, Gate, LimitSettings,
    RateLimiter, SessionSettings, Sessions, Users,
};
use casescope_proto::cases::v1::cases_service_client::CasesServiceClient;
use casescope_proto::cases::v1::cases_service_server::CasesServiceServer;
use casescope_proto::cases::v1::{CreateCaseRequest, GetCaseRequest};
use casescope_proto::common::v1::CaseId;
use casescope_proto::identity::{Guarded, InternalKey};
use clap::Parser;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tonic::transport::Channel;

#[derive(Parser)]
struct Args {
    /// Calls per arm per round.
    #[arg(long, default_value_t = 2000)]
    calls: usize,
    /// Rounds; the arms take turns within each.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
}

const PASSWORD: &str = "benchmark password, long enough";

struct Arm {
    name: &'static str,
    client: CasesServiceClient<Channel>,
    bearer: Option<String>,
    samples: Vec<Duration>,
}

async fn serve(router: axum::Router) -> anyhow::Result<Channel> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, router).await {
            eprintln!("server stopped: {error}");
        }
    });
    Ok(Channel::from_shared(format!("http://{address}"))?
        .tcp_nodelay(true)
        .connect()
        .await?)
}

async fn sqlite(dir: &std::path::Path, name: &str) -> anyhow::Result<Database> {
    let url = format!("sqlite://{}", dir.join(format!("{name}.db")).display());
    Ok(Database::connect(&url, &DbOptions::default()).await?)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;

    // The cases service, as `casescope serve` builds it.
    let cases_db = sqlite(dir.path(), "cases").await?;
    cases_db.migrate(casescope_cases::ALL_MIGRATIONS).await?;
    let outbox = Outbox::new(cases_db.clone(), Arc::new(InProcessBus::default()));
    let cases = casescope_cases::CasesApi::new(cases_db, outbox);

    // The gateway on its own database: a user who views one case.
    let db = sqlite(dir.path(), "gateway").await?;
    db.migrate(ALL_MIGRATIONS).await?;
    let keys = Arc::new(
        KeySet::new("casescope", "casescope", &generate_private_pem(), &[])
            .map_err(|e| anyhow!("{e}"))?,
    );
    let users = Users::new(db.clone());
    let admin = users
        .create("benchadmin", "Admin", PASSWORD, GlobalRole::Admin)
        .await
        .map_err(|e| anyhow!("{e}"))?;
    let analyst = users
        .create("analyst", "Analyst", PASSWORD, GlobalRole::Analyst)
        .await
        .map_err(|e| anyhow!("{e}"))?;
    let sessions = Sessions::new(users.clone(), keys.clone(), SessionSettings::default());
    let session = sessions
        .login("analyst", PASSWORD)
        .await
        .map_err(|e| anyhow!("{e}"))?;
    let tokens = ApiTokens::new(db.clone());
    let (_, api_token) = tokens
        .create(
            &analyst.id,
            "benchmark",
            &[],
            true,
            casescope_db::now_micros() + 86_400_000_000,
        )
        .await
        .map_err(|e| anyhow!("{e}"))?;
    let roles = CaseRoles::new(db.clone());
    let key = InternalKey::generate();
    let gate = Gate::new(
        Authenticator::new(sessions, tokens),
        roles.clone(),
        AuditLog::new(db.clone(), keys),
        key.clone(),
        RateLimiter::new(LimitSettings {
            requests_per_second: 1e9,
            burst: 1e9,
            max_uploads: 8,
        }),
    );

    let bare = tonic::service::Routes::new(CasesServiceServer::new(cases.clone()))
        .prepare()
        .into_axum_router();
    let guarded = Guarded::new(CasesServiceServer::new(cases), key, |_| false);
    let gated = tonic::service::Routes::new(guarded)
        .prepare()
        .into_axum_router()
        .layer(axum::middleware::from_fn_with_state(
            gate,
            casescope_gateway::enforce,
        ));
    let bare = serve(bare).await?;
    let gated = serve(gated).await?;

    // One case, its viewer the analyst.
    let case = CasesServiceClient::new(bare.clone())
        .create_case(CreateCaseRequest {
            name: "benchmark".into(),
            ..Default::default()
        })
        .await
        .context("create the case")?
        .into_inner();
    let case_id = case.id.context("the case has an id")?;
    roles
        .set(&analyst.id, &case_id.value, CaseRole::Viewer, &admin.id)
        .await
        .map_err(|e| anyhow!("{e}"))?;

    let mut arms = vec![
        Arm {
            name: "direct (no gateway, baseline)",
            client: CasesServiceClient::new(bare),
            bearer: None,
            samples: Vec::new(),
        },
        Arm {
            name: "gateway, access token (JWT)",
            client: CasesServiceClient::new(gated.clone()),
            bearer: Some(session.access_token.clone()),
            samples: Vec::new(),
        },
        Arm {
            name: "gateway, API token (audited)",
            client: CasesServiceClient::new(gated),
            bearer: Some(api_token),
            samples: Vec::new(),
        },
    ];

    println!(
        "gateway overhead: GetCase over loopback HTTP/2, {} rounds x {} calls per arm, one at a time",
        args.rounds, args.calls
    );
    for round in 0..=args.rounds {
        for arm in &mut arms {
            for _ in 0..args.calls {
                let mut request = tonic::Request::new(GetCaseRequest {
                    id: Some(CaseId {
                        value: case_id.value.clone(),
                    }),
                });
                if let Some(token) = &arm.bearer {
                    request
                        .metadata_mut()
                        .insert("authorization", format!("Bearer {token}").parse()?);
                }
                let started = Instant::now();
                arm.client
                    .get_case(request)
                    .await
                    .with_context(|| format!("GetCase ({})", arm.name))?;
                // Round 0 warms connections, caches and the JIT-free code paths alike.
                if round > 0 {
                    arm.samples.push(started.elapsed());
                }
            }
        }
    }

    let mut baseline = None;
    println!(
        "  {:<32} {:>10} {:>10} {:>10} {:>14}",
        "arm", "p50 µs", "p90 µs", "p99 µs", "p50 added µs"
    );
    for arm in &mut arms {
        arm.samples.sort();
        let p50 = percentile(&arm.samples, 0.5);
        let base = *baseline.get_or_insert(p50);
        println!(
            "  {:<32} {:>10.1} {:>10.1} {:>10.1} {:>14.1}   ({:.2}x the baseline)",
            arm.name,
            micros(p50),
            micros(percentile(&arm.samples, 0.9)),
            micros(percentile(&arm.samples, 0.99)),
            micros(p50) - micros(base),
            p50.as_secs_f64() / base.as_secs_f64(),
        );
    }
    let worst = arms
        .iter()
        .map(|arm| micros(percentile(&arm.samples, 0.5)))
        .fold(0.0, f64::max)
        - micros(baseline.unwrap_or_default());
    println!(
        "  the gateway adds at most {worst:.0} µs to the median GetCase (budget 1000 µs: {})",
        if worst <= 1000.0 { "within" } else { "OVER" }
    );
    Ok(())
}
