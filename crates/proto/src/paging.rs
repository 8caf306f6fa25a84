//! Paging rules shared by every list RPC: page size 0 means the default, anything above
//! the maximum is refused (never silently clamped), cursors are opaque strings that the
//! owning service encodes and validates.

use crate::common::v1::PageRequest;
use crate::error::ApiError;

/// Page size used when a request leaves `page_size` at 0.
pub const DEFAULT_PAGE_SIZE: u32 = 50;
/// Largest page any list RPC returns.
pub const MAX_PAGE_SIZE: u32 = 1000;
/// Cursors longer than this are refused before any decoding.
pub const MAX_CURSOR_LEN: usize = 512;

/// A validated page request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub size: u32,
    pub cursor: Option<String>,
}

/// Validates `page` (the request field at `field_path`, e.g. "page").
pub fn validate_page(page: Option<&PageRequest>, field_path: &str) -> Result<Page, ApiError> {
    let Some(page) = page else {
        return Ok(Page {
            size: DEFAULT_PAGE_SIZE,
            cursor: None,
        });
    };
    let size = match page.page_size {
        0 => DEFAULT_PAGE_SIZE,
        n if n > MAX_PAGE_SIZE => {
            return Err(ApiError::invalid_field(
                "PAGE_SIZE_TOO_LARGE",
                format!("{field_path}.page_size"),
                format!("{n} is above the maximum page size {MAX_PAGE_SIZE}"),
            ));
        }
        n => n,
    };
    if page.cursor.len() > MAX_CURSOR_LEN {
        return Err(ApiError::invalid_field(
            "CURSOR_INVALID",
            format!("{field_path}.cursor"),
            "cursor is too long; pass the next_cursor of a previous page unchanged",
        ));
    }
    let cursor = (!page.cursor.is_empty()).then(|| page.cursor.clone());
    Ok(Page { size, cursor })
}

/// The paths of an update's field mask; none is INVALID_ARGUMENT (an update must name
/// what it changes).
pub fn mask_paths(mask: Option<&prost_types::FieldMask>) -> Result<Vec<String>, ApiError> {
    let paths = mask.map(|m| m.paths.clone()).unwrap_or_default();
    if paths.is_empty() {
        return Err(ApiError::invalid_field(
            "UPDATE_MASK_EMPTY",
            "update_mask",
            "name the fields to change",
        ));
    }
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_means_default_and_over_max_is_refused() {
        let default = validate_page(Some(&PageRequest::default()), "page").unwrap();
        assert_eq!(default.size, DEFAULT_PAGE_SIZE);
        let max = PageRequest {
            page_size: MAX_PAGE_SIZE,
            cursor: String::new(),
        };
        assert_eq!(
            validate_page(Some(&max), "page").unwrap().size,
            MAX_PAGE_SIZE
        );
        let over = PageRequest {
            page_size: MAX_PAGE_SIZE + 1,
            cursor: String::new(),
        };
        let error = validate_page(Some(&over), "page").unwrap_err();
        assert!(error.to_string().contains("page.page_size"), "{error}");
    }
}
