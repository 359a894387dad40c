//! The last look at a write's permit: a request's body that asks the permit when the
//! connection is about to send it.
//!
//! The provider clients ask the permit ([`super::check_write_permit`]) right before they
//! hand a request to the HTTP client, but the bytes leave later, from the connection's
//! own task: after a pool checkout or a new connection, and after that task is scheduled.
//! A process stopped (SIGSTOP, a frozen VM) inside that gap would send the write on
//! resuming, after its claim lapsed. So a write's body is handed over as [`GatedBody`],
//! which asks the permit again when the connection polls it for the bytes: the request's
//! head declares the body's length, so a refused body leaves at most a request the
//! provider never completes, never a write. What remains is the time between that poll
//! and the socket write, in one poll of the connection task, and requests without a body
//! (a DELETE): those are asked only before the hand-over.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use super::{ProviderError, WritePermit};

/// A request body sent only if `permit` still allows it when the connection asks for it.
pub struct GatedBody {
    bytes: Option<Bytes>,
    len: u64,
    permit: WritePermit,
}

impl GatedBody {
    pub fn new(bytes: Bytes, permit: WritePermit) -> Self {
        GatedBody {
            len: bytes.len() as u64,
            bytes: Some(bytes),
            permit,
        }
    }
}

impl Body for GatedBody {
    type Data = Bytes;
    type Error = ProviderError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ProviderError>>> {
        let Some(bytes) = self.bytes.take() else {
            return Poll::Ready(None);
        };
        Poll::Ready(Some((self.permit.0)().map(|()| Frame::data(bytes))))
    }

    fn is_end_stream(&self) -> bool {
        self.bytes.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.len)
    }
}

/// `req` with its body gated by the permit of the write it runs in (see the module's
/// documentation); unchanged outside a write, without a body, or with a streamed body
/// (a multipart upload: asked before the hand-over only).
pub fn gate_body(mut req: reqwest::Request) -> reqwest::Request {
    let Ok(permit) = super::WRITE_PERMIT.try_with(WritePermit::clone) else {
        return req;
    };
    let bytes = req
        .body()
        .and_then(reqwest::Body::as_bytes)
        .filter(|b| !b.is_empty())
        .map(Bytes::copy_from_slice);
    if let Some(bytes) = bytes {
        *req.body_mut() = Some(reqwest::Body::wrap(GatedBody::new(bytes, permit)));
    }
    req
}

/// Sends `req` with its body gated (see [`gate_body`]): the permit is asked right before
/// the hand-over and again when the body leaves; a send that failed because the permit
/// went meanwhile says so (not "unavailable").
pub async fn send_gated(
    client: &reqwest::Client,
    req: reqwest::Request,
) -> Result<Result<reqwest::Response, reqwest::Error>, ProviderError> {
    super::check_write_permit()?;
    match client.execute(gate_body(req)).await {
        Ok(resp) => Ok(Ok(resp)),
        Err(e) => {
            super::check_write_permit()?;
            Ok(Err(e))
        }
    }
}

#[cfg(test)]
#[path = "gate_tests.rs"]
mod tests;
