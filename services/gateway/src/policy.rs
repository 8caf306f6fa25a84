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
use CaseRole::{Analyst as CaseAnalyst, CaseAdmin, Viewer as CaseViewer};

const CASE: Option<&str> = Some("case_id");
const ID: Option<&str> = Some("id");
const HEADER: Option<&str> = Some("header.case_id");

/// The policy: one entry per RPC of the contract.
pub const POLICY: &[Rule] = &[
    // Authentication.
    rule(
        "/casescope.gateway.v1.AuthService/Login",
        Public,
        true,
        None,
    ),
    rule(
        "/casescope.gateway.v1.AuthService/Refresh",
        Public,
        true,
        None,
    ),
    rule(
        "/casescope.gateway.v1.AuthService/Logout",
        Public,
        true,
        None,
    ),
    rule(
        "/casescope.gateway.v1.AuthService/WhoAmI",
        Authenticated,
        false,
        None,
    ),
    rule(
        "/casescope.gateway.v1.AuthService/ChangePassword",
        Authenticated,
        true,
        None,
    ),
    rule(
        "/casescope.gateway.v1.AuthService/BeginOidcLogin",
        Public,
        false,
        None,
    ),
    rule(
        "/casescope.gateway.v1.AuthService/CompleteOidcLogin",
        Public,
        true,
        None,
    ),
    // Administration.
    rule(
        "/casescope.gateway.v1.AdminService/CreateUser",
        Admin,
        true,
        None,
    ),
    rule(
        "/casescope.gateway.v1.AdminService/GetUser",
        Admin,
        false,
        None,
    ),
    rule(
        "/casescope.gateway.v1.AdminService/ListUsers",
        Admin,
        false,
        None,
    ),
    rule(
        "/casescope.gateway.v1.AdminService/UpdateUser",
        Admin,
        true,
        None,
    ),
    rule(
        "/casescope.gateway.v1.AdminService/DeleteUser",
        Admin,
        true,
        None,
    ),
    rule(
        "/casescope.gateway.v1.AdminService/SetCaseRole",
        Case(CaseAdmin),
        true,
        CASE,
    ),
    rule(
        "/casescope.gateway.v1.AdminService/RemoveCaseRole",
        Case(CaseAdmin),
        true,
        CASE,
    ),
    rule(
        "/casescope.gateway.v1.AdminService/ListCaseRoles",
        Authenticated,
        false,
        CASE,
    ),
    rule(
        "/casescope.gateway.v1.AdminService/CreateApiToken",
        Authenticated,
        true,
        None,
    ),
    rule(
        "/casescope.gateway.v1.AdminService/ListApiTokens",
        Authenticated,
        false,
        None,
    ),
    rule(
        "/casescope.gateway.v1.AdminService/RevokeApiToken",
        Authenticated,
        true,
        None,
    ),
    rule(
        "/casescope.gateway.v1.AdminService/ListAuditLog",
        Auditor,
        false,
        None,
    ),
    rule(
        "/casescope.gateway.v1.AdminService/VerifyAuditLog",
        Auditor,
        false,
        None,
    ),
    // Cases.
    rule(
        "/casescope.cases.v1.CasesService/CreateCase",
        GlobalAnalyst,
        true,
        None,
    ),
    rule(
        "/casescope.cases.v1.CasesService/GetCase",
        Case(CaseViewer),
        false,
        ID,
    ),
    rule(
        "/casescope.cases.v1.CasesService/ListCases",
        OwnCases,
        false,
        None,
    ),
    rule(
        "/casescope.cases.v1.CasesService/UpdateCase",
        Case(CaseAdmin),
        true,
        ID,
    ),
    rule(
        "/casescope.cases.v1.CasesService/ArchiveCase",
        Case(CaseAdmin),
        true,
        ID,
    ),
    rule(
        "/casescope.cases.v1.CasesService/RestoreCase",
        Case(CaseAdmin),
        true,
        ID,
    ),
    rule(
        "/casescope.cases.v1.CasesService/DeleteCase",
        Case(CaseAdmin),
        true,
        ID,
    ),
    rule(
        "/casescope.cases.v1.CasesService/ListFiles",
        Case(CaseViewer),
        false,
        CASE,
    ),
    rule(
        "/casescope.cases.v1.CasesService/GetFile",
        Case(CaseViewer),
        false,
        CASE,
    ),
    rule(
        "/casescope.cases.v1.CasesService/TagEvents",
        Case(CaseAnalyst),
        true,
        CASE,
    ),
    rule(
        "/casescope.cases.v1.CasesService/UntagEvents",
        Case(CaseAnalyst),
        true,
        CASE,
    ),
    rule(
        "/casescope.cases.v1.CasesService/UpdateTag",
        Case(CaseAnalyst),
        true,
        CASE,
    ),
    rule(
        "/casescope.cases.v1.CasesService/StarEvents",
        Case(CaseAnalyst),
        true,
        CASE,
    ),
    rule(
        "/casescope.cases.v1.CasesService/GetAnnotationJob",
        Case(CaseViewer),
        false,
        CASE,
    ),
    rule(
        "/casescope.cases.v1.CasesService/ListTags",
        Case(CaseViewer),
        false,
        CASE,
    ),
    rule(
        "/casescope.cases.v1.CasesService/AddComment",
        Case(CaseAnalyst),
        true,
        CASE,
    ),
    rule(
        "/casescope.cases.v1.CasesService/EditComment",
        Case(CaseAnalyst),
        true,
        CASE,
    ),
    rule(
        "/casescope.cases.v1.CasesService/DeleteComment",
        Case(CaseAnalyst),
        true,
        CASE,
    ),
    rule(
        "/casescope.cases.v1.CasesService/ListComments",
        Case(CaseViewer),
        false,
        CASE,
    ),
    rule(
        "/casescope.cases.v1.CasesService/ListCommentRevisions",
        Case(CaseViewer),
        false,
        CASE,
    ),
    rule(
        "/casescope.cases.v1.CasesService/GetAnnotations",
        Case(CaseViewer),
        false,
        CASE,
    ),
    rule(
        "/casescope.cases.v1.CasesService/SaveSearch",
        Case(CaseViewer),
        true,
        CASE,
    ),
    rule(
        "/casescope.cases.v1.CasesService/ListSavedSearches",
        Case(CaseViewer),
        false,
        CASE,
    ),
    rule(
        "/casescope.cases.v1.CasesService/DeleteSavedSearch",
        Case(CaseViewer),
        true,
        CASE,
    ),
    rule(
        "/casescope.cases.v1.CasesService/ListSearchHistory",
        Case(CaseViewer),
        false,
        CASE,
    ),
    rule(
        "/casescope.cases.v1.CasesService/GetCaseNotes",
        Case(CaseViewer),
        false,
        CASE,
    ),
    rule(
        "/casescope.cases.v1.CasesService/UpdateCaseNotes",
        Case(CaseAnalyst),
        true,
        CASE,
    ),
    rule(
        "/casescope.cases.v1.CasesService/ListCaseNotesVersions",
        Case(CaseViewer),
        false,
        CASE,
    ),
    rule(
        "/casescope.cases.v1.CasesService/SearchTimeline",
        Case(CaseViewer),
        false,
        CASE,
    ),
    rule(
        "/casescope.cases.v1.CasesService/TimelineHistogram",
        Case(CaseViewer),
        false,
        CASE,
    ),
    rule(
        "/casescope.cases.v1.CasesService/TimelineFacets",
        Case(CaseViewer),
        false,
        CASE,
    ),
    rule(
        "/casescope.cases.v1.CasesService/GetEventContext",
        Case(CaseViewer),
        false,
        CASE,
    ),
    rule(
        "/casescope.cases.v1.CasesService/ExportTimeline",
        Case(CaseViewer),
        true,
        CASE,
    ),
    rule(
        "/casescope.cases.v1.CasesService/ExportAnnotations",
        Case(CaseViewer),
        true,
        CASE,
    ),
    rule(
        "/casescope.cases.v1.FileRecordsService/RegisterFile",
        Internal,
        true,
        CASE,
    ),
    rule(
        "/casescope.cases.v1.FileRecordsService/UpdateFileStatus",
        Internal,
        true,
        CASE,
    ),
    rule(
        "/casescope.cases.v1.FileRecordsService/FinishRestore",
        Internal,
        true,
        CASE,
    ),
    // Ingest and events.
    rule(
        "/casescope.ingest.v1.IngestService/Upload",
        Case(CaseAnalyst),
        true,
        HEADER,
    ),
    rule(
        "/casescope.ingest.v1.IngestService/GetUploadStatus",
        Case(CaseAnalyst),
        false,
        CASE,
    ),
    rule(
        "/casescope.ingest.v1.IngestService/BeginUpload",
        Case(CaseAnalyst),
        true,
        CASE,
    ),
    rule(
        "/casescope.ingest.v1.IngestService/UploadPart",
        Case(CaseAnalyst),
        true,
        CASE,
    ),
    rule(
        "/casescope.ingest.v1.IngestService/SearchEvents",
        Case(CaseViewer),
        false,
        CASE,
    ),
    rule(
        "/casescope.ingest.v1.IngestService/CountEvents",
        Case(CaseViewer),
        false,
        CASE,
    ),
    rule(
        "/casescope.ingest.v1.IngestService/GetEvent",
        Case(CaseViewer),
        false,
        CASE,
    ),
    rule(
        "/casescope.ingest.v1.IngestService/BatchGetEvents",
        Case(CaseViewer),
        false,
        CASE,
    ),
    rule(
        "/casescope.ingest.v1.IngestService/Facets",
        Case(CaseViewer),
        false,
        CASE,
    ),
    rule(
        "/casescope.ingest.v1.IngestService/StreamEvents",
        Case(CaseViewer),
        true,
        CASE,
    ),
    rule(
        "/casescope.ingest.v1.IngestService/ScanFileEvents",
        Case(CaseViewer),
        false,
        CASE,
    ),
    rule(
        "/casescope.ingest.v1.IngestService/Histogram",
        Case(CaseViewer),
        false,
        CASE,
    ),
    rule(
        "/casescope.ingest.v1.IngestService/ReindexFile",
        Case(CaseAnalyst),
        true,
        CASE,
    ),
    // Detection.
    rule(
        "/casescope.detect.v1.DetectService/ImportRules",
        Admin,
        true,
        None,
    ),
    rule(
        "/casescope.detect.v1.DetectService/ListRules",
        Authenticated,
        false,
        None,
    ),
    rule(
        "/casescope.detect.v1.DetectService/GetRule",
        Authenticated,
        false,
        None,
    ),
    rule(
        "/casescope.detect.v1.DetectService/SetRuleState",
        Admin,
        true,
        None,
    ),
    rule(
        "/casescope.detect.v1.DetectService/GetRuleset",
        Authenticated,
        false,
        None,
    ),
    rule(
        "/casescope.detect.v1.DetectService/ListDetections",
        Case(CaseViewer),
        false,
        CASE,
    ),
    rule(
        "/casescope.detect.v1.DetectService/GetDetection",
        Case(CaseViewer),
        false,
        CASE,
    ),
    rule(
        "/casescope.detect.v1.DetectService/DetectedEvents",
        Case(CaseViewer),
        false,
        CASE,
    ),
    rule(
        "/casescope.detect.v1.DetectService/CountDetections",
        Case(CaseViewer),
        false,
        CASE,
    ),
    rule(
        "/casescope.detect.v1.DetectService/RerunDetection",
        Case(CaseAnalyst),
        true,
        CASE,
    ),
    rule(
        "/casescope.detect.v1.DetectService/ListFileStates",
        Case(CaseViewer),
        false,
        CASE,
    ),
    // IOCs (IOCs of a global list, without a case, are for admins: the service checks).
    rule(
        "/casescope.ioc.v1.IocService/CreateIoc",
        Case(CaseAnalyst),
        true,
        CASE,
    ),
    rule(
        "/casescope.ioc.v1.IocService/GetIoc",
        Case(CaseViewer),
        false,
        CASE,
    ),
    rule(
        "/casescope.ioc.v1.IocService/ListIocs",
        Case(CaseViewer),
        false,
        CASE,
    ),
    rule(
        "/casescope.ioc.v1.IocService/UpdateIoc",
        Case(CaseAnalyst),
        true,
        CASE,
    ),
    rule(
        "/casescope.ioc.v1.IocService/DeleteIoc",
        Case(CaseAnalyst),
        true,
        CASE,
    ),
    rule(
        "/casescope.ioc.v1.IocService/ImportIocs",
        Case(CaseAnalyst),
        true,
        HEADER,
    ),
    rule(
        "/casescope.ioc.v1.IocService/ImportIocsFile",
        Case(CaseAnalyst),
        true,
        HEADER,
    ),
    rule(
        "/casescope.ioc.v1.IocService/ExportIocs",
        Case(CaseViewer),
        false,
        CASE,
    ),
    rule(
        "/casescope.ioc.v1.IocService/HuntCase",
        Case(CaseAnalyst),
        true,
        CASE,
    ),
    rule(
        "/casescope.ioc.v1.IocService/HuntFiles",
        Case(CaseAnalyst),
        true,
        CASE,
    ),
    rule(
        "/casescope.ioc.v1.IocService/ListHuntStates",
        Case(CaseViewer),
        false,
        CASE,
    ),
    rule(
        "/casescope.ioc.v1.IocService/ListMatches",
        Case(CaseViewer),
        false,
        CASE,
    ),
    rule(
        "/casescope.ioc.v1.IocService/CountMatches",
        Case(CaseViewer),
        false,
        CASE,
    ),
    // Global IOC lists: they apply across cases, so admins change them and global
    // analysts read them.
    rule(
        "/casescope.ioc.v1.IocService/CreateIocList",
        Admin,
        true,
        None,
    ),
    rule(
        "/casescope.ioc.v1.IocService/GetIocList",
        GlobalAnalyst,
        false,
        None,
    ),
    rule(
        "/casescope.ioc.v1.IocService/ListIocLists",
        GlobalAnalyst,
        false,
        None,
    ),
    rule(
        "/casescope.ioc.v1.IocService/UpdateIocList",
        Admin,
        true,
        None,
    ),
    rule(
        "/casescope.ioc.v1.IocService/DeleteIocList",
        Admin,
        true,
        None,
    ),
    rule(
        "/casescope.ioc.v1.IocService/CreateListIoc",
        Admin,
        true,
        None,
    ),
    rule(
        "/casescope.ioc.v1.IocService/GetListIoc",
        GlobalAnalyst,
        false,
        None,
    ),
    rule(
        "/casescope.ioc.v1.IocService/ListListIocs",
        GlobalAnalyst,
        false,
        None,
    ),
    rule(
        "/casescope.ioc.v1.IocService/UpdateListIoc",
        Admin,
        true,
        None,
    ),
    rule(
        "/casescope.ioc.v1.IocService/DeleteListIoc",
        Admin,
        true,
        None,
    ),
    rule(
        "/casescope.ioc.v1.IocService/ImportListIocs",
        Admin,
        true,
        None,
    ),
    rule(
        "/casescope.ioc.v1.IocService/ImportListIocsFile",
        Admin,
        true,
        None,
    ),
    rule(
        "/casescope.ioc.v1.IocService/ExportListIocs",
        GlobalAnalyst,
        false,
        None,
    ),
    // Reports.
    rule(
        "/casescope.report.v1.ReportService/CreateReport",
        Case(CaseAnalyst),
        true,
        CASE,
    ),
    rule(
        "/casescope.report.v1.ReportService/GetReport",
        Case(CaseViewer),
        false,
        CASE,
    ),
    rule(
        "/casescope.report.v1.ReportService/ListReports",
        Case(CaseViewer),
        false,
        CASE,
    ),
    rule(
        "/casescope.report.v1.ReportService/DownloadReport",
        Case(CaseViewer),
        false,
        CASE,
    ),
    rule(
        "/casescope.report.v1.ReportService/DeleteReport",
        Case(CaseAnalyst),
        true,
        CASE,
    ),
    // Integrations (configuration is the admins'; pushes and enrichment a case's).
    rule(
        "/casescope.integrations.v1.IntegrationsService/CreateIntegration",
        Admin,
        true,
        None,
    ),
    rule(
        "/casescope.integrations.v1.IntegrationsService/GetIntegration",
        Admin,
        false,
        None,
    ),
    rule(
        "/casescope.integrations.v1.IntegrationsService/ListIntegrations",
        Authenticated,
        false,
        None,
    ),
    rule(
        "/casescope.integrations.v1.IntegrationsService/UpdateIntegration",
        Admin,
        true,
        None,
    ),
    rule(
        "/casescope.integrations.v1.IntegrationsService/DeleteIntegration",
        Admin,
        true,
        None,
    ),
    rule(
        "/casescope.integrations.v1.IntegrationsService/TestIntegration",
        Admin,
        true,
        None,
    ),
    rule(
        "/casescope.integrations.v1.IntegrationsService/PushCaseToIris",
        Case(CaseAnalyst),
        true,
        CASE,
    ),
    rule(
        "/casescope.integrations.v1.IntegrationsService/EnrichIocs",
        Case(CaseAnalyst),
        true,
        CASE,
    ),
    rule(
        "/casescope.integrations.v1.IntegrationsService/ImportOpenCtiIndicators",
        Case(CaseAnalyst),
        true,
        CASE,
    ),
    rule(
        "/casescope.integrations.v1.IntegrationsService/ListDeliveries",
        Case(CaseViewer),
        false,
        CASE,
    ),
    rule(
        "/casescope.integrations.v1.IntegrationsService/GetDelivery",
        Case(CaseViewer),
        false,
        CASE,
    ),
    rule(
        "/casescope.integrations.v1.IntegrationsService/RetryDelivery",
        Case(CaseAnalyst),
        true,
        CASE,
    ),
];

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
