//! Reading annotations: the case's tags, comments and a comment's revisions, paged.

use super::{comment_id, comment_to_pb, event_id, store, tag_to_pb};
use crate::cursor;
use crate::repo::Position;
use crate::service::{CasesApi, db_error};
use crate::validate;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use casescope_proto::cases::v1 as pb;
use casescope_proto::common::v1::{PageResponse, UserId};
use casescope_proto::error::ApiError;
use casescope_proto::paging::validate_page;
use casescope_proto::time::micros_to_timestamp;

fn bad_cursor() -> ApiError {
    ApiError::invalid_field(
        "CURSOR_INVALID",
        "page.cursor",
        "not a cursor this server issued; pass next_cursor from the previous page unchanged",
    )
}

impl CasesApi {
    pub(crate) async fn list_tags_now(
        &self,
        request: pb::ListTagsRequest,
    ) -> Result<pb::ListTagsResponse, ApiError> {
        let case_id = validate::case_id(request.case_id.as_ref(), "case_id")?;
        let page = validate_page(request.page.as_ref(), "page")?;
        let after = match page.cursor.as_deref() {
            None => String::new(),
            Some(text) => URL_SAFE_NO_PAD
                .decode(text)
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .ok_or_else(bad_cursor)?,
        };
        self.require_case(&case_id).await?;
        let mut tags = store::list_tags(self.repo.db(), &case_id, &after, page.size + 1)
            .await
            .map_err(db_error)?;
        let more = tags.len() > page.size as usize;
        tags.truncate(page.size as usize);
        let next_cursor = match tags.last() {
            Some(last) if more => URL_SAFE_NO_PAD.encode(&last.name),
            _ => String::new(),
        };
        Ok(pb::ListTagsResponse {
            tags: tags.iter().map(tag_to_pb).collect(),
            page: Some(PageResponse { next_cursor }),
        })
    }

    pub(crate) async fn list_comments_now(
        &self,
        request: pb::ListCommentsRequest,
    ) -> Result<pb::ListCommentsResponse, ApiError> {
        let case_id = validate::case_id(request.case_id.as_ref(), "case_id")?;
        let page = validate_page(request.page.as_ref(), "page")?;
        let event = match request.event_id.as_ref().filter(|id| !id.value.is_empty()) {
            Some(id) => event_id(Some(id), "event_id")?,
            None => String::new(),
        };
        let after = page
            .cursor
            .as_deref()
            .map(|c| cursor::decode(c, "page.cursor"))
            .transpose()?
            .map(|position| (position.at, position.id));
        self.require_case(&case_id).await?;
        let mut comments = store::list_comments(
            self.repo.db(),
            &case_id,
            &event,
            after,
            page.size + 1,
            request.newest_first,
        )
        .await
        .map_err(db_error)?;
        let more = comments.len() > page.size as usize;
        comments.truncate(page.size as usize);
        let next_cursor = match comments.last() {
            Some(last) if more => cursor::encode(&Position {
                at: last.created_at,
                id: last.id.clone(),
            }),
            _ => String::new(),
        };
        Ok(pb::ListCommentsResponse {
            comments: comments.iter().map(comment_to_pb).collect(),
            page: Some(PageResponse { next_cursor }),
        })
    }

    pub(crate) async fn list_revisions_now(
        &self,
        request: pb::ListCommentRevisionsRequest,
    ) -> Result<pb::ListCommentRevisionsResponse, ApiError> {
        let case_id = validate::case_id(request.case_id.as_ref(), "case_id")?;
        let id = comment_id(request.id.as_ref(), "id")?;
        let mut tx = self.begin().await?;
        let found = store::get_comment(&mut tx, &case_id, &id)
            .await
            .map_err(db_error)?;
        tx.commit().await.map_err(|e| db_error(e.into()))?;
        if found.is_none() {
            return Err(ApiError::not_found(
                "COMMENT_NOT_FOUND",
                format!("comment {id} does not exist in this case"),
            ));
        }
        let revisions = store::list_revisions(self.repo.db(), &id)
            .await
            .map_err(db_error)?;
        Ok(pb::ListCommentRevisionsResponse {
            revisions: revisions
                .into_iter()
                .map(|r| pb::CommentRevision {
                    revision: u32::try_from(r.revision).unwrap_or_default(),
                    body: r.body,
                    editor: Some(UserId { value: r.editor_id }),
                    written_at: Some(micros_to_timestamp(r.written_at)),
                })
                .collect(),
        })
    }
}
