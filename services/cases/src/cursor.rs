//! Opaque page cursors: base64url of "<micros>:<id>". A malformed cursor is an
//! INVALID_ARGUMENT naming the field, not a 500.

use crate::repo::Position;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use casescope_proto::error::ApiError;

pub fn encode(position: &Position) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}:{}", position.at, position.id))
}

pub fn decode(cursor: &str, field: &str) -> Result<Position, ApiError> {
    let invalid = || {
        ApiError::invalid_field(
            "CURSOR_INVALID",
            field,
            "not a cursor this server issued; pass next_cursor from the previous page unchanged",
        )
    };
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let (at, id) = text.split_once(':').ok_or_else(invalid)?;
    let at = at.parse::<i64>().map_err(|_| invalid())?;
    if id.is_empty() || id.len() > 64 {
        return Err(invalid());
    }
    Ok(Position {
        at,
        id: id.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_garbage() {
        let position = Position {
            at: 1_700_000_000_000_000,
            id: "0190e6f0-0000-7000-8000-000000000000".into(),
        };
        assert_eq!(decode(&encode(&position), "page.cursor").unwrap(), position);
        for garbage in ["", "!!!", "bm90LWEtY3Vyc29y", "eDp5"] {
            let error = decode(garbage, "page.cursor").unwrap_err();
            assert!(
                error.to_string().contains("page.cursor"),
                "{garbage}: {error}"
            );
        }
    }
}
