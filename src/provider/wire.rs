//! The Provider API's wire format shared by the HTTP client and the simulator's server:
//! request/response bodies that have no model type, header names, and the mapping
//! between `ProviderError` and HTTP status + error code, in both directions.
//!
//! Contract: `error_of_response(status_of(e), …, body_of(e))` gives back `e`'s variant
//! for every error a server sends. Reading an answer, the error *code* decides between
//! "the provider says the account is frozen/banned" and everything else, and any 5xx
//! is `Unavailable` whatever its body says: a gateway's error page must never read as a
//! freeze.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ChangeBatch, DigestPage, EntityWrite, ProviderError};
use crate::model::{Change, ChangeOp, Digest, EntityKey};

/// Request header with the origin tag recorded on the change a write causes.
pub const ORIGIN_HEADER: &str = "X-Understudy-Origin";
/// Default wait when a 429 carries no usable `Retry-After`.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

/// `{"error": {"code", "message"}}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub code: String,
    #[serde(default)]
    pub message: String,
}

/// Body of `PUT …/entities/{kind}/{eid}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PutBody {
    pub payload: serde_json::Value,
}

/// Borrowed form of [`PutBody`] so the client serialises without copying the payload.
#[derive(Serialize)]
pub struct PutBodyRef<'a> {
    pub payload: &'a serde_json::Value,
}

/// `fields` of `GET …/entities`: what each listed entity carries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ListFields {
    /// Key, payload and digest (the default).
    #[default]
    Full,
    /// Key and digest only ([`WireDigestPage`]).
    Digest,
}

impl ListFields {
    /// The query value.
    pub fn as_str(self) -> &'static str {
        match self {
            ListFields::Full => "full",
            ListFields::Digest => "digest",
        }
    }
}

impl std::str::FromStr for ListFields {
    /// A message for the `bad_request` answer.
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        [ListFields::Full, ListFields::Digest]
            .into_iter()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| format!("fields must be \"full\" or \"digest\", not {s:?}"))
    }
}

/// One entity of a `fields=digest` listing: its key and digest, no payload.
#[derive(Deserialize)]
pub struct WireKeyDigest {
    pub key: EntityKey,
    pub digest: Digest,
}

/// Answer of `GET …/entities?fields=digest`.
#[derive(Deserialize)]
pub struct WireDigestPage {
    pub entities: Vec<WireKeyDigest>,
    #[serde(default)]
    pub next: Option<EntityKey>,
}

impl From<WireDigestPage> for DigestPage {
    fn from(w: WireDigestPage) -> Self {
        DigestPage {
            items: w.entities.into_iter().map(|e| (e.key, e.digest)).collect(),
            next: w.next,
        }
    }
}

/// Answer of `GET …/changes/head`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HeadCursor {
    pub cursor: String,
}

/// A change as it travels, decoded without `#[serde(flatten)]`: the model's `Change`
/// flattens its op, which makes serde buffer every field (payload included) before
/// decoding it, about twice the work on the feed's hot path.
#[derive(Deserialize)]
pub struct WireChange {
    pub seq: u64,
    pub key: EntityKey,
    pub op: WireOp,
    #[serde(default)]
    pub payload: Option<serde_json::Value>,
    #[serde(default)]
    pub origin: Option<String>,
    pub at: String,
}

#[derive(Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WireOp {
    Upsert,
    Delete,
}

/// A change batch as it travels (see [`WireChange`]).
#[derive(Deserialize)]
pub struct WireChangeBatch {
    pub changes: Vec<WireChange>,
    pub cursor: String,
    #[serde(default)]
    pub remaining: u64,
}

impl TryFrom<WireChangeBatch> for ChangeBatch {
    type Error = ProviderError;
    fn try_from(w: WireChangeBatch) -> Result<Self, ProviderError> {
        let changes = w
            .changes
            .into_iter()
            .map(|c| {
                let op = match (c.op, c.payload) {
                    (WireOp::Upsert, Some(payload)) => ChangeOp::Upsert { payload },
                    (WireOp::Upsert, None) => {
                        return Err(ProviderError::Protocol(format!(
                            "change {} (upsert of {}) has no payload",
                            c.seq, c.key
                        )));
                    }
                    (WireOp::Delete, _) => ChangeOp::Delete,
                };
                Ok(Change {
                    seq: c.seq,
                    key: c.key,
                    op,
                    origin: c.origin,
                    at: c.at,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ChangeBatch {
            changes,
            cursor: w.cursor,
            remaining: w.remaining,
        })
    }
}

/// One write of `POST …/writes`, as received: the key stays text so that a bad key
/// rejects only its own write.
#[derive(Deserialize)]
pub struct WireWrite {
    pub key: String,
    pub op: WireOp,
    #[serde(default)]
    pub payload: Option<serde_json::Value>,
}

/// Body of `POST …/writes`.
#[derive(Deserialize)]
pub struct WireWriteBatch {
    pub writes: Vec<WireWrite>,
}

/// One write as the client sends it (borrowed: no copy of the payload).
#[derive(Serialize)]
pub struct WireWriteRef<'a> {
    pub key: &'a str,
    pub op: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<&'a serde_json::Value>,
}

/// Body of `POST …/writes` as the client sends it.
#[derive(Serialize)]
pub struct WireWriteBatchRef<'a> {
    pub writes: Vec<WireWriteRef<'a>>,
}

impl<'a> WireWriteBatchRef<'a> {
    pub fn of(writes: &'a [EntityWrite]) -> Self {
        WireWriteBatchRef {
            writes: writes
                .iter()
                .map(|w| match w {
                    EntityWrite::Put(e) => WireWriteRef {
                        key: e.key.as_str(),
                        op: "upsert",
                        payload: Some(&e.payload),
                    },
                    EntityWrite::Delete(k) => WireWriteRef {
                        key: k.as_str(),
                        op: "delete",
                        payload: None,
                    },
                })
                .collect(),
        }
    }
}

/// Error code a server sends for a request it could not understand (HTTP 400).
pub const BAD_REQUEST: &str = "bad_request";

/// HTTP status and wire code of an error.
pub fn status_and_code(err: &ProviderError) -> (u16, &'static str) {
    match err {
        ProviderError::AccountFrozen { .. } | ProviderError::AccountBanned { .. } => {
            (403, err.code())
        }
        ProviderError::RateLimited { .. } => (429, err.code()),
        ProviderError::Unauthorized(_) => (401, err.code()),
        // The Provider API has no code of its own for it: a refusal of the credentials.
        ProviderError::Misconfigured(_) => (401, "unauthorized"),
        ProviderError::NotFound(_) => (404, err.code()),
        ProviderError::Rejected(_) => (422, err.code()),
        ProviderError::MissingReference(_) => (409, err.code()),
        ProviderError::CursorExpired(_) => (410, err.code()),
        ProviderError::Unavailable(_) => (503, err.code()),
        // A server uses `Protocol` for a request it could not parse.
        ProviderError::Protocol(_) => (400, BAD_REQUEST),
    }
}

/// The message part of an error (for frozen/banned: the provider's reason).
pub fn message_of(err: &ProviderError) -> String {
    match err {
        ProviderError::AccountFrozen { reason } | ProviderError::AccountBanned { reason } => {
            reason.clone()
        }
        ProviderError::RateLimited { retry_after } => {
            format!(
                "too many requests; retry after {}s",
                retry_after.as_secs().max(1)
            )
        }
        ProviderError::Unauthorized(m)
        | ProviderError::Misconfigured(m)
        | ProviderError::NotFound(m)
        | ProviderError::Rejected(m)
        | ProviderError::MissingReference(m)
        | ProviderError::CursorExpired(m)
        | ProviderError::Unavailable(m)
        | ProviderError::Protocol(m) => m.clone(),
    }
}

/// JSON body of an error answer.
pub fn body_of(err: &ProviderError) -> ErrorBody {
    ErrorBody {
        error: ErrorDetail {
            code: status_and_code(err).1.to_string(),
            message: message_of(err),
        },
    }
}

/// Parses `Retry-After` (delta-seconds; an HTTP date or garbage falls back to 1 s).
pub fn parse_retry_after(value: Option<&str>) -> Duration {
    value
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(DEFAULT_RETRY_AFTER, Duration::from_secs)
}

/// The error an HTTP error answer stands for.
pub fn error_of_response(status: u16, retry_after: Option<&str>, body: &[u8]) -> ProviderError {
    let detail: Option<ErrorDetail> = serde_json::from_slice::<ErrorBody>(body)
        .ok()
        .map(|b| b.error);
    let message = detail
        .as_ref()
        .map(|d| d.message.clone())
        .unwrap_or_else(|| snippet(body));
    if status >= 500 {
        return ProviderError::Unavailable(format!("HTTP {status}: {message}"));
    }
    let code = detail.as_ref().map(|d| d.code.as_str());
    match (status, code) {
        (_, Some("account_frozen")) if status == 403 => {
            ProviderError::AccountFrozen { reason: message }
        }
        (_, Some("account_banned")) if status == 403 => {
            ProviderError::AccountBanned { reason: message }
        }
        (429, _) | (_, Some("rate_limited")) => ProviderError::RateLimited {
            retry_after: parse_retry_after(retry_after),
        },
        (401, _) | (403, _) | (_, Some("unauthorized")) => {
            ProviderError::Unauthorized(format!("HTTP {status}: {message}"))
        }
        (404, _) | (_, Some("not_found")) => ProviderError::NotFound(message),
        (422, _) | (_, Some("invalid_entity")) => ProviderError::Rejected(message),
        (409, _) | (_, Some("missing_reference")) => ProviderError::MissingReference(message),
        (410, _) | (_, Some("cursor_expired")) => ProviderError::CursorExpired(message),
        (_, Some("unavailable")) => ProviderError::Unavailable(message),
        _ => ProviderError::Protocol(format!("HTTP {status}: {message}")),
    }
}

/// The start of a body that is not a JSON error, for the message.
fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
    if text.trim().is_empty() {
        "(empty body)".to_string()
    } else {
        text.trim().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_server_error_round_trips() {
        let errors = [
            ProviderError::AccountFrozen {
                reason: "冻结 abuse".into(),
            },
            ProviderError::AccountBanned {
                reason: "ban".into(),
            },
            ProviderError::RateLimited {
                retry_after: Duration::from_secs(3),
            },
            ProviderError::Unauthorized("bad token".into()),
            ProviderError::NotFound("no such account".into()),
            ProviderError::Rejected("bad payload".into()),
            ProviderError::MissingReference("tag 7: member li.si".into()),
            ProviderError::CursorExpired("old".into()),
            ProviderError::Unavailable("down".into()),
            ProviderError::Protocol("bad request".into()),
        ];
        for e in errors {
            let (status, _) = status_and_code(&e);
            let body = serde_json::to_vec(&body_of(&e)).unwrap();
            let back = error_of_response(status, Some("3"), &body);
            assert_eq!(
                std::mem::discriminant(&back),
                std::mem::discriminant(&e),
                "{e:?} came back as {back:?}"
            );
        }
    }

    #[test]
    fn wire_changes_decode_like_the_model() {
        let text = r#"{"changes":[
            {"seq":1,"key":"tag/t1","op":"upsert","payload":{"n":1},"origin":"o","at":"2026-01-01T00:00:00.000Z"},
            {"seq":2,"key":"tag/t1","op":"delete","at":"2026-01-01T00:00:00.001Z"}],
            "cursor":"2","remaining":5}"#;
        let wire: WireChangeBatch = serde_json::from_str(text).unwrap();
        let model: ChangeBatch = serde_json::from_str(text).unwrap();
        assert_eq!(ChangeBatch::try_from(wire).unwrap(), model);
        let bad = r#"{"changes":[{"seq":1,"key":"tag/t1","op":"upsert","at":"x"}],"cursor":"1"}"#;
        let wire: WireChangeBatch = serde_json::from_str(bad).unwrap();
        assert!(matches!(
            ChangeBatch::try_from(wire),
            Err(ProviderError::Protocol(_))
        ));
    }

    #[test]
    fn openapi_names_every_entity_kind_in_its_enum_and_key_pattern() {
        let doc: serde_yaml::Value =
            serde_yaml::from_str(include_str!("openapi.yaml")).expect("openapi.yaml parses");
        let schemas = &doc["components"]["schemas"];
        let listed: Vec<&str> = schemas["EntityKind"]["enum"]
            .as_sequence()
            .expect("EntityKind has an enum")
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        let pattern = schemas["EntityKey"]["pattern"].as_str().unwrap();
        for kind in crate::model::EntityKind::ALL {
            assert!(
                listed.contains(&kind.as_str()),
                "{kind} missing from the enum"
            );
            assert!(
                pattern.contains(kind.as_str()),
                "{kind} missing from the key pattern"
            );
        }
        assert_eq!(listed.len(), crate::model::EntityKind::ALL.len());
    }

    #[test]
    fn openapi_documents_every_route_and_error_code() {
        let doc: serde_yaml::Value =
            serde_yaml::from_str(crate::provider::sim::server::OPENAPI_YAML).unwrap();
        let paths = doc["paths"].as_mapping().unwrap();
        // The routes `sim::server::router` and `sim::admin::routes` register.
        for route in [
            "/v1/accounts/{id}/status",
            "/v1/accounts/{id}/entities",
            "/v1/accounts/{id}/entities/{kind}/{eid}",
            "/v1/accounts/{id}/writes",
            "/v1/accounts/{id}/changes",
            "/v1/accounts/{id}/changes/head",
            "/v1/accounts/{id}/probe",
            "/v1/accounts/{id}/activity",
            "/healthz",
            "/openapi.yaml",
            "/admin/accounts",
            "/admin/accounts/{id}",
            "/admin/accounts/{id}/seed",
            "/admin/accounts/{id}/status",
            "/admin/accounts/{id}/faults",
            "/admin/accounts/{id}/load",
            "/admin/accounts/{id}/activity",
            "/admin/accounts/{id}/notice",
        ] {
            assert!(paths.contains_key(route), "{route} is not documented");
        }
        let codes: Vec<&str> = doc["components"]["schemas"]["Error"]["properties"]["error"]
            ["properties"]["code"]["enum"]
            .as_sequence()
            .unwrap()
            .iter()
            .filter_map(|c| c.as_str())
            .collect();
        for e in [
            ProviderError::AccountFrozen {
                reason: String::new(),
            },
            ProviderError::AccountBanned {
                reason: String::new(),
            },
            ProviderError::RateLimited {
                retry_after: Duration::ZERO,
            },
            ProviderError::Unauthorized(String::new()),
            ProviderError::NotFound(String::new()),
            ProviderError::Rejected(String::new()),
            ProviderError::MissingReference(String::new()),
            ProviderError::CursorExpired(String::new()),
            ProviderError::Unavailable(String::new()),
            ProviderError::Protocol(String::new()),
        ] {
            let code = status_and_code(&e).1;
            assert!(codes.contains(&code), "{code} is not documented");
        }
    }

    #[test]
    fn list_fields_parse_as_documented() {
        let doc: serde_yaml::Value =
            serde_yaml::from_str(crate::provider::sim::server::OPENAPI_YAML).unwrap();
        let params = doc["paths"]["/v1/accounts/{id}/entities"]["get"]["parameters"]
            .as_sequence()
            .unwrap();
        let fields = params.iter().find(|p| p["name"] == "fields").unwrap();
        let documented: Vec<&str> = fields["schema"]["enum"]
            .as_sequence()
            .unwrap()
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        let ours = [ListFields::Full, ListFields::Digest];
        assert_eq!(documented, ours.map(ListFields::as_str));
        for f in ours {
            assert_eq!(f.as_str().parse::<ListFields>(), Ok(f));
        }
        assert_eq!(fields["schema"]["default"], ListFields::default().as_str());
        let err = "payload".parse::<ListFields>().unwrap_err();
        assert!(err.contains("\"full\" or \"digest\""), "{err}");
    }

    #[test]
    fn freezes_need_the_code_and_5xx_is_never_a_freeze() {
        let frozen = br#"{"error":{"code":"account_frozen","message":"x"}}"#;
        assert!(matches!(
            error_of_response(502, None, frozen),
            ProviderError::Unavailable(_)
        ));
        assert!(matches!(
            error_of_response(403, None, b"<html>Forbidden</html>"),
            ProviderError::Unauthorized(_)
        ));
        assert!(matches!(
            error_of_response(418, None, b""),
            ProviderError::Protocol(_)
        ));
        assert_eq!(
            error_of_response(429, Some("Wed, 21 Oct 2015 07:28:00 GMT"), b""),
            ProviderError::RateLimited {
                retry_after: DEFAULT_RETRY_AFTER
            }
        );
    }
}
