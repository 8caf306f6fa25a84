//! `CaseMembersService`: the role grants of a case for CaseScope's own services (the
//! report lists a case's members). Internal: the guard in front of it answers only calls
//! carrying a service identity signed with the internal key, and the gateway never
//! forwards it from outside (its policy entry is `Internal`).

use crate::CaseRoles;
use crate::auth_api::grant_to_pb;
use casescope_proto::error::ApiError;
use casescope_proto::gateway::v1 as pb;
use casescope_proto::gateway::v1::case_members_service_server::CaseMembersService;
use casescope_proto::ids::case_id;
use casescope_proto::paging::validate_page;
use tonic::{Request, Response, Status};

#[derive(Clone)]
pub struct CaseMembersApi {
    roles: CaseRoles,
}

impl CaseMembersApi {
    pub fn new(roles: CaseRoles) -> Self {
        Self { roles }
    }
}

#[tonic::async_trait]
impl CaseMembersService for CaseMembersApi {
    async fn list_case_members(
        &self,
        request: Request<pb::ListCaseMembersRequest>,
    ) -> Result<Response<pb::ListCaseRolesResponse>, Status> {
        let request = request.into_inner();
        let case = case_id(request.case_id.as_ref(), "case_id")?;
        let page = validate_page(request.page.as_ref(), "page")?;
        let after = page.cursor.clone().unwrap_or_default();
        let mut grants = self
            .roles
            .list(Some(&case), None, &after, i64::from(page.size) + 1)
            .await
            .map_err(|e| ApiError::internal_logged("list case members", e))?;
        let more = grants.len() > page.size as usize;
        grants.truncate(page.size as usize);
        let next = if more {
            grants
                .last()
                .map(|g| format!("{}|{}", g.case_id, g.user_id))
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(pb::ListCaseRolesResponse {
            grants: grants.iter().map(grant_to_pb).collect(),
            page: Some(casescope_proto::common::v1::PageResponse { next_cursor: next }),
        }))
    }
}
