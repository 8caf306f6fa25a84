//! The authorisation policy: exactly one entry per RPC of the contract (a test reads
//! every method from the compiled descriptor set and fails on a missing, extra or
//! duplicate entry), and the decision for a caller.
//!
//! Global roles: `admin` (everything), `analyst` (creates cases; works in the cases it
//! has a role on), `auditor` (the audit log, and every case read-only), `viewer` (only
//! the cases it has a role on). Case roles: `viewer` < `analyst` < `case_admin`.
//! A caller without a role on the case addressed gets NOT_FOUND, as if the case did not
//! exist; with too small a role, PERMISSION_DENIED. A read-only API token is refused
//! every mutating RPC, and a token limited to some cases sees no other case.
//! docs/rbac.md is generated from this table (a test keeps it in step).

use crate::principal::{CaseRole, Principal};

/// A user's global role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GlobalRole {
    Admin,
    Analyst,
    Auditor,
    Viewer,
}

impl GlobalRole {
    pub fn as_str(self) -> &'static str {
        match self {
            GlobalRole::Admin => "admin",
            GlobalRole::Analyst => "analyst",
            GlobalRole::Auditor => "auditor",
            GlobalRole::Viewer => "viewer",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "admin" => Some(GlobalRole::Admin),
            "analyst" => Some(GlobalRole::Analyst),
            "auditor" => Some(GlobalRole::Auditor),
            "viewer" => Some(GlobalRole::Viewer),
            _ => None,
        }
    }
}

/// Who may call an RPC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No credentials (Login, Refresh, Logout, OIDC sign-in).
    Public,
    /// Between CaseScope's own services only; never through the gateway.
    Internal,
    /// Any signed-in user; the RPC itself limits the caller to their own things.
    Authenticated,
    /// Any signed-in user; the answer lists only the caller's cases.
    OwnCases,
    /// Global admins and analysts (e.g. creating a case).
    GlobalAnalyst,
    /// Global admins and auditors.
    Auditor,
    /// Global admins only.
    Admin,
    /// At least this role on the case named by the request's case field.
    Case(CaseRole),
}

/// One RPC's entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// Full gRPC method, `/package.Service/Method`.
    pub method: &'static str,
    pub access: Access,
    /// Changes something (refused to read-only tokens; audited as a change).
    pub mutating: bool,
    /// Path of the `CaseId` field in the request (`case_id`, `id`, `header.case_id`),
    /// for [`Access::Case`] and for the audit log.
    pub case_field: Option<&'static str>,
}

const fn rule(
    method: &'static str,
    access: Access,
    mutating: bool,
    case_field: Option<&'static str>,
) -> Rule {
    Rule {
        method,
        access,
        mutating,
        case_field,
    }
}

use Access::*;

mod table;

pub use table::POLICY;

/// The entry of `method`, if it is in the contract.
pub fn rule_of(method: &str) -> Option<&'static Rule> {
    POLICY.iter().find(|rule| rule.method == method)
}

/// What happens to a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// No valid credentials.
    Unauthenticated,
    /// Signed in, but not allowed (the case, if any, is visible to the caller).
    Denied,
    /// The caller may not know the case exists.
    NotFound,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Unauthenticated => "unauthenticated",
            Decision::Denied => "denied",
            Decision::NotFound => "not_found",
        }
    }
}

/// The decision for `caller` (None: no valid credentials) calling `rule` on a case
/// where its user holds `case_role` (looked up by the caller of this function).
pub fn decide(
    rule: &Rule,
    caller: Option<&Principal>,
    case_id: Option<&str>,
    case_role: Option<CaseRole>,
) -> Decision {
    if rule.access == Public {
        return Decision::Allow;
    }
    let Some(caller) = caller else {
        return Decision::Unauthenticated;
    };
    if rule.access == Internal {
        return Decision::Denied;
    }
    let role = caller.user.role;
    if rule.mutating && caller.read_only() {
        return Decision::Denied;
    }
    match rule.access {
        Public | Internal => unreachable!("handled above"),
        Authenticated | OwnCases => Decision::Allow,
        GlobalAnalyst => allow_if(matches!(role, GlobalRole::Admin | GlobalRole::Analyst)),
        Auditor => allow_if(matches!(role, GlobalRole::Admin | GlobalRole::Auditor)),
        Admin => allow_if(role == GlobalRole::Admin),
        Case(needed) => {
            let Some(case_id) = case_id else {
                return Decision::Denied;
            };
            if !caller.credential_allows_case(case_id) {
                return Decision::NotFound;
            }
            let effective = match role {
                GlobalRole::Admin => Some(CaseRole::CaseAdmin),
                // Auditors read every case; what they are granted on top still counts.
                GlobalRole::Auditor => case_role.max(Some(CaseRole::Viewer)),
                GlobalRole::Analyst | GlobalRole::Viewer => case_role,
            };
            match effective {
                None => Decision::NotFound,
                Some(held) if held >= needed => Decision::Allow,
                Some(_) => Decision::Denied,
            }
        }
    }
}

fn allow_if(allowed: bool) -> Decision {
    if allowed {
        Decision::Allow
    } else {
        Decision::Denied
    }
}

/// docs/rbac.md: the policy as a table.
pub fn markdown() -> String {
    let mut out = String::from(
        "# Who may call what\n\n\
         Generated from `services/gateway/src/policy.rs` (a test keeps this file equal to \
         it). Global roles: admin, analyst, auditor, viewer; case roles: viewer < analyst < \
         case_admin. Admins hold every case role; auditors read every case. No role on the \
         case answers NOT_FOUND; too small a role PERMISSION_DENIED; read-only API tokens \
         are refused every row marked as a change; internal RPCs are refused to every \
         caller from outside.\n\n\
         | RPC | who | change | case from |\n|---|---|---|---|\n",
    );
    for rule in POLICY {
        let who = match rule.access {
            Public => "anyone".to_string(),
            Internal => "internal (services only)".to_string(),
            Authenticated => "signed in (own data)".to_string(),
            OwnCases => "signed in (lists own cases)".to_string(),
            GlobalAnalyst => "admin, analyst".to_string(),
            Auditor => "admin, auditor".to_string(),
            Admin => "admin".to_string(),
            Case(role) => format!("case {}+", role.as_str()),
        };
        out.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            rule.method.trim_start_matches('/'),
            who,
            if rule.mutating { "yes" } else { "" },
            rule.case_field
                .map(|f| format!("`{f}`"))
                .unwrap_or_default()
        ));
    }
    out
}
