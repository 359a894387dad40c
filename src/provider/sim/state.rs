//! The simulator's HTTP state and answers, shared by the Provider API (`server`), the
//! admin API (`admin`), the WeCom API (`wecom`), the official-account API
//! (`officialaccount`) and the Agora Chat API (`agora`), none of which import each other's
//! handlers through it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::http::header::{CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::load::LoadControl;
use super::registry::SimStore;
use crate::provider::{ProviderError, wire};

pub(super) struct AppState {
    pub store: SimStore,
    pub token: Option<String>,
    pub auto_create: bool,
    /// Running loads per account (admin).
    pub loads: Mutex<HashMap<String, LoadControl>>,
    /// Client for posting notices to webhooks.
    pub http: reqwest::Client,
    /// The WeCom API's corps (secrets, tokens, rate windows).
    pub wecom: super::wecom::state::WecomSim,
    /// The official accounts (secrets, tokens, quotas, content).
    pub officialaccount: super::officialaccount::state::OaSim,
    /// The Agora Chat apps (credentials, rate windows, users, groups).
    pub agora: super::agora::state::AgoraSim,
}

pub(super) type Shared = Arc<AppState>;

/// An error answer.
pub(super) struct ApiError(pub ProviderError);

impl From<ProviderError> for ApiError {
    fn from(e: ProviderError) -> Self {
        ApiError(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, _) = wire::status_and_code(&self.0);
        let body = serde_json::to_vec(&wire::body_of(&self.0)).unwrap_or_default();
        let mut resp = (
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
            body,
        )
            .into_response();
        if let ProviderError::RateLimited { retry_after } = &self.0 {
            resp.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(retry_after.as_secs().max(1)));
        }
        resp
    }
}

pub(super) type ApiResult = Result<Response, ApiError>;

/// A JSON answer from text already in JSON form.
pub(super) fn json_text(status: StatusCode, body: String) -> Response {
    (
        status,
        [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        body,
    )
        .into_response()
}

/// A JSON answer from a serialisable value.
pub(super) fn json_of<T: serde::Serialize>(status: StatusCode, value: &T) -> ApiResult {
    let text = serde_json::to_string(value)
        .map_err(|e| ProviderError::Unavailable(format!("cannot encode the answer: {e}")))?;
    Ok(json_text(status, text))
}

pub(super) fn bad_request(msg: impl Into<String>) -> ApiError {
    ApiError(ProviderError::Protocol(msg.into()))
}
