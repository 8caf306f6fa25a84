//! DFIR-IRIS's REST API (v2.4): `Authorization: Bearer <key>`, case-scoped routes with
//! `?cid=`, answers in the envelope `{"status": "success"|"error", "message", "data"}`
//! (HTTP 200 on success, 400 for a refused request, 401/403 for credentials).

use crate::outbound::{Answer, OutRequest, Outbound, OutboundError, excerpt};
use reqwest::{Method, Url};
use serde_json::Value;

/// Why a call failed.
#[derive(Debug, Clone, PartialEq)]
pub struct IrisError {
    pub message: String,
    /// HTTP status of the answer, 0 when none.
    pub http_status: u32,
    /// Worth another attempt later.
    pub transient: bool,
    /// The answer's `message` and `data` as IRIS gave them (for the callers that
    /// recognise a refusal, e.g. a duplicate asset).
    pub refusal: String,
}

impl std::fmt::Display for IrisError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<OutboundError> for IrisError {
    fn from(error: OutboundError) -> Self {
        Self {
            http_status: match &error {
                OutboundError::Status { status, .. } => u32::from(*status),
                _ => 0,
            },
            transient: error.transient(),
            message: format!("DFIR-IRIS: {error}"),
            refusal: String::new(),
        }
    }
}

/// The client of one IRIS instance.
pub struct IrisClient {
    out: Outbound,
    base: String,
}

impl IrisClient {
    pub fn new(out: Outbound, base: &str) -> Self {
        Self {
            out,
            base: base.trim_end_matches('/').to_string(),
        }
    }

    fn url(&self, path: &str, cid: Option<u64>) -> Result<Url, IrisError> {
        let mut url = Url::parse(&format!("{}{path}", self.base)).map_err(|e| IrisError {
            message: format!("DFIR-IRIS: the URL cannot be made: {e}"),
            http_status: 0,
            transient: false,
            refusal: String::new(),
        })?;
        if let Some(cid) = cid {
            url.query_pairs_mut().append_pair("cid", &cid.to_string());
        }
        Ok(url)
    }

    /// `GET path` → the envelope's `data`.
    pub async fn get(&self, path: &str, cid: Option<u64>) -> Result<Value, IrisError> {
        let request = OutRequest::get(self.url(path, cid)?);
        self.call(path, &request).await
    }

    /// `POST path` with a JSON body → the envelope's `data`. `idempotent`: false for a
    /// creation IRIS does not de-duplicate — it is then not sent again after a timeout
    /// or a server error (the caller recovers what it made instead).
    pub async fn post(
        &self,
        path: &str,
        cid: Option<u64>,
        body: &Value,
        idempotent: bool,
    ) -> Result<Value, IrisError> {
        let mut request = OutRequest::post_json(self.url(path, cid)?, body);
        request.idempotent = idempotent;
        self.call(path, &request).await
    }

    async fn call(&self, path: &str, request: &OutRequest) -> Result<Value, IrisError> {
        debug_assert!(request.method == Method::GET || request.method == Method::POST);
        let answer = self.out.send(request).await?;
        envelope(path, &answer)
    }
}

/// The `data` of a success envelope, or the error it says.
fn envelope(path: &str, answer: &Answer) -> Result<Value, IrisError> {
    let body: Option<Value> = serde_json::from_slice(&answer.body).ok();
    let status = body
        .as_ref()
        .and_then(|b| b.get("status"))
        .and_then(Value::as_str);
    if (200..300).contains(&answer.status) && status == Some("success") {
        return Ok(body
            .and_then(|mut b| b.get_mut("data").map(Value::take))
            .unwrap_or(Value::Null));
    }
    let said = match &body {
        Some(b) => {
            let message = b.get("message").and_then(Value::as_str).unwrap_or("");
            let data = match b.get("data") {
                None | Some(Value::Null) => String::new(),
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
            };
            excerpt(format!("{message} {data}").as_bytes(), 300)
        }
        None => excerpt(&answer.body, 200),
    };
    let hint = match answer.status {
        401 => " (check the API key)",
        403 => " (the key's user lacks the permission)",
        404 => " (check the base URL and the IRIS version)",
        _ => "",
    };
    let shown = if said.is_empty() {
        String::new()
    } else {
        format!(": {said}")
    };
    Err(IrisError {
        message: format!(
            "DFIR-IRIS refused {path}: HTTP {}{hint}{shown}",
            answer.status
        ),
        http_status: u32::from(answer.status),
        // A 2xx without the envelope is a proxy or another product; none retried.
        transient: false,
        refusal: said,
    })
}

/// The `u64` at `key` of `value` (IRIS gives ids as numbers).
pub fn id_at(value: &Value, key: &str) -> Option<u64> {
    match value.get(key)? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// The array of a list answer: `data` itself, or `data.<key>`.
pub fn list_at<'a>(data: &'a Value, key: &str) -> &'a [Value] {
    match data {
        Value::Array(items) => items,
        other => other
            .get(key)
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str) -> Answer {
        Answer {
            status,
            body: body.as_bytes().to_vec(),
            attempts: 1,
        }
    }

    #[test]
    fn envelopes_are_read() {
        let data = envelope(
            "/x",
            &answer(
                200,
                r#"{"status":"success","message":"","data":{"case_id":7}}"#,
            ),
        )
        .unwrap();
        assert_eq!(id_at(&data, "case_id"), Some(7));
        let error = envelope(
            "/case/assets/add",
            &answer(
                400,
                r#"{"status":"error","message":"Data error","data":{"asset_name":["Asset name already exists in this case"]}}"#,
            ),
        )
        .unwrap_err();
        assert_eq!(error.http_status, 400);
        assert!(error.refusal.contains("already exists"), "{error:?}");
        assert!(!error.transient);
        let error = envelope("/api/ping", &answer(401, "")).unwrap_err();
        assert!(error.message.contains("check the API key"), "{error}");
        // 200 without the envelope: not IRIS.
        assert!(envelope("/x", &answer(200, "<html>")).is_err());
    }

    #[test]
    fn lists_are_found_in_either_shape() {
        let v: Value = serde_json::json!({"assets": [{"asset_id": 1}]});
        assert_eq!(list_at(&v, "assets").len(), 1);
        let v: Value = serde_json::json!([{"a": 1}, {"a": 2}]);
        assert_eq!(list_at(&v, "assets").len(), 2);
        assert!(list_at(&Value::Null, "x").is_empty());
    }
}
