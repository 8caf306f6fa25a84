//! The policy against the compiled contract: every RPC has exactly one entry (a new RPC
//! without one fails here), every case field named resolves to a `CaseId` in the
//! request, docs/rbac.md is the table generated from it, and the decision for each kind
//! of caller on each kind of entry is the one the table states.

use casescope_gateway::policy::{Access, Decision, GlobalRole, POLICY, decide, markdown, rule_of};
use casescope_gateway::{ApiTokenRow, CaseRole, Credential, Principal, UserRow};
use prost_reflect::{DescriptorPool, Kind};
use std::collections::BTreeSet;

fn contract_methods() -> (DescriptorPool, BTreeSet<String>) {
    let pool = DescriptorPool::decode(casescope_proto::FILE_DESCRIPTOR_SET).unwrap();
    let methods = pool
        .services()
        .filter(|s| s.full_name().starts_with("casescope."))
        .flat_map(|s| {
            s.methods()
                .map(|m| format!("/{}/{}", s.full_name(), m.name()))
                .collect::<Vec<_>>()
        })
        .collect();
    (pool, methods)
}

#[test]
fn every_rpc_has_exactly_one_policy_entry() {
    let (_, methods) = contract_methods();
    assert!(methods.len() > 80, "{}", methods.len());
    let mut seen = BTreeSet::new();
    for rule in POLICY {
        assert!(seen.insert(rule.method), "two entries for {}", rule.method);
    }
    let policy: BTreeSet<String> = seen.iter().map(|m| m.to_string()).collect();
    let missing: Vec<_> = methods.difference(&policy).collect();
    let extra: Vec<_> = policy.difference(&methods).collect();
    assert!(
        missing.is_empty(),
        "RPCs without a policy entry: {missing:?}"
    );
    assert!(extra.is_empty(), "policy entries for no RPC: {extra:?}");
}

#[test]
fn case_fields_name_a_case_id_of_the_request() {
    let (pool, _) = contract_methods();
    for rule in POLICY {
        let (service, method) = rule.method[1..].rsplit_once('/').unwrap();
        let method = pool
            .get_service_by_name(service)
            .unwrap()
            .methods()
            .find(|m| m.name() == method)
            .unwrap();
        if matches!(rule.access, Access::Case(_)) {
            assert!(
                rule.case_field.is_some(),
                "{}: a case rule needs its case field",
                rule.method
            );
        }
        let Some(path) = rule.case_field else {
            continue;
        };
        let mut message = method.input();
        let parts: Vec<&str> = path.split('.').collect();
        for (i, part) in parts.iter().enumerate() {
            let field = message.get_field_by_name(part).unwrap_or_else(|| {
                panic!(
                    "{}: {} has no field {part}",
                    rule.method,
                    message.full_name()
                )
            });
            let Kind::Message(inner) = field.kind() else {
                panic!("{}: {path} is not a message field", rule.method);
            };
            if i + 1 == parts.len() {
                assert_eq!(
                    inner.full_name(),
                    "casescope.common.v1.CaseId",
                    "{}: {path}",
                    rule.method
                );
                assert!(!field.is_list(), "{}: {path} is a list", rule.method);
            }
            message = inner;
        }
    }
}

#[test]
fn docs_rbac_is_the_generated_table() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/rbac.md");
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    if committed != markdown() {
        if std::env::var("CASESCOPE_UPDATE_DOCS").is_ok_and(|v| v == "1") {
            std::fs::write(path, markdown()).unwrap();
        } else {
            panic!(
                "docs/rbac.md differs from the policy; regenerate it with \
                 CASESCOPE_UPDATE_DOCS=1 cargo test -p casescope-gateway --test policy"
            );
        }
    }
}

fn user(role: GlobalRole) -> UserRow {
    UserRow {
        id: format!("user-{}", role.as_str()),
        username: role.as_str().into(),
        display_name: String::new(),
        email: String::new(),
        password_hash: String::new(),
        is_admin: role == GlobalRole::Admin,
        role,
        disabled: false,
        created_at: 0,
        updated_at: 0,
        last_login_at: None,
        version: 1,
    }
}

fn session(role: GlobalRole) -> Principal {
    Principal {
        user: user(role),
        credential: Credential::Session {
            session_id: "s".into(),
            expires_at: u64::MAX,
        },
    }
}

fn token(role: GlobalRole, read_only: bool, cases: &[&str]) -> Principal {
    Principal {
        user: user(role),
        credential: Credential::ApiToken(ApiTokenRow {
            id: "t".into(),
            user_id: user(role).id,
            name: "t".into(),
            value_prefix: "cst_".into(),
            case_ids: cases.iter().map(|c| c.to_string()).collect(),
            read_only,
            created_at: 0,
            expires_at: i64::MAX,
            last_used_at: None,
            revoked_at: None,
        }),
    }
}

const CASE: &str = "01a20545-ff79-73bd-be57-fc0fc36e8375";
const OTHER: &str = "01a20545-ff79-73bd-be57-fc0fc36e8376";

/// Callers of the matrix: (name, principal, role on CASE).
fn callers() -> Vec<(&'static str, Option<Principal>, Option<CaseRole>)> {
    use GlobalRole::*;
    let member = |role| Some(role);
    vec![
        ("admin", Some(session(Admin)), None),
        (
            "case owner",
            Some(session(Analyst)),
            member(CaseRole::CaseAdmin),
        ),
        (
            "case editor",
            Some(session(Analyst)),
            member(CaseRole::Analyst),
        ),
        (
            "case viewer",
            Some(session(Viewer)),
            member(CaseRole::Viewer),
        ),
        ("non-member analyst", Some(session(Analyst)), None),
        ("auditor", Some(session(Auditor)), None),
        (
            "read-only token of the editor",
            Some(token(Analyst, true, &[])),
            member(CaseRole::Analyst),
        ),
        (
            "editor's token for another case",
            Some(token(Analyst, false, &[OTHER])),
            member(CaseRole::Analyst),
        ),
        // Disabled users, expired and revoked tokens never become principals.
        ("anonymous / disabled / expired / revoked", None, None),
    ]
}

#[test]
fn decisions_follow_the_table() {
    use Decision::*;
    // (RPC, expected decision per caller in the order of `callers()`).
    let expected: &[(&str, [Decision; 9])] = &[
        ("/casescope.gateway.v1.AuthService/Login", [Allow; 9]),
        (
            "/casescope.gateway.v1.AuthService/WhoAmI",
            [
                Allow,
                Allow,
                Allow,
                Allow,
                Allow,
                Allow,
                Allow,
                Allow,
                Unauthenticated,
            ],
        ),
        (
            "/casescope.cases.v1.CasesService/GetCase",
            [
                Allow,
                Allow,
                Allow,
                Allow,
                NotFound,
                Allow,
                Allow,
                NotFound,
                Unauthenticated,
            ],
        ),
        (
            "/casescope.cases.v1.CasesService/DeleteCase",
            [
                Allow,
                Allow,
                Denied,
                Denied,
                NotFound,
                Denied,
                Denied,
                NotFound,
                Unauthenticated,
            ],
        ),
        (
            "/casescope.cases.v1.CasesService/TagEvents",
            [
                Allow,
                Allow,
                Allow,
                Denied,
                NotFound,
                Denied,
                Denied,
                NotFound,
                Unauthenticated,
            ],
        ),
        (
            "/casescope.ingest.v1.IngestService/SearchEvents",
            [
                Allow,
                Allow,
                Allow,
                Allow,
                NotFound,
                Allow,
                Allow,
                NotFound,
                Unauthenticated,
            ],
        ),
        (
            "/casescope.cases.v1.CasesService/CreateCase",
            [
                Allow,
                Allow,
                Allow,
                Denied,
                Allow,
                Denied,
                Denied,
                Allow,
                Unauthenticated,
            ],
        ),
        (
            "/casescope.cases.v1.CasesService/ListCases",
            [
                Allow,
                Allow,
                Allow,
                Allow,
                Allow,
                Allow,
                Allow,
                Allow,
                Unauthenticated,
            ],
        ),
        (
            "/casescope.gateway.v1.AdminService/ListAuditLog",
            [
                Allow,
                Denied,
                Denied,
                Denied,
                Denied,
                Allow,
                Denied,
                Denied,
                Unauthenticated,
            ],
        ),
        (
            "/casescope.detect.v1.DetectService/ImportRules",
            [
                Allow,
                Denied,
                Denied,
                Denied,
                Denied,
                Denied,
                Denied,
                Denied,
                Unauthenticated,
            ],
        ),
        (
            "/casescope.cases.v1.FileRecordsService/RegisterFile",
            [
                Denied,
                Denied,
                Denied,
                Denied,
                Denied,
                Denied,
                Denied,
                Denied,
                Unauthenticated,
            ],
        ),
    ];
    let callers = callers();
    for (method, decisions) in expected {
        let rule = rule_of(method).unwrap();
        for ((name, principal, case_role), want) in callers.iter().zip(decisions) {
            let got = decide(rule, principal.as_ref(), Some(CASE), *case_role);
            assert_eq!(got, *want, "{method} by {name}");
        }
    }
}
