//! What librdkafka says about a connection: every audit client (admin, producer, reader)
//! is created with [`AuditContext`], which keeps the last error the client reported
//! through librdkafka's error callback. A refused connection (SASL authentication failed,
//! TLS handshake failed) is reported there within a second, while the operation that
//! needed the connection would only time out much later without saying why: the audit
//! writer and `audit verify` stop early with the broker's reason instead.
//!
//! The reason text comes from librdkafka (e.g. "SASL authentication error: Authentication
//! failed: Invalid username or password"); it does not quote configuration values, and
//! callers still pass it through `AuditKafka::scrub` before showing it.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use rdkafka::client::ClientContext;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

/// One error reported by a client.
#[derive(Clone, Debug)]
pub struct ClientError {
    pub at: Instant,
    /// The brokers refused the client's credentials or TLS (retrying will not help).
    pub refused: bool,
    pub reason: String,
}

/// The last error of the clients sharing it (cheap to clone; clones share the slot).
#[derive(Clone, Debug, Default)]
pub struct ClientErrors(Arc<Mutex<Option<ClientError>>>);

impl ClientErrors {
    fn set(&self, e: ClientError) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
    }

    /// The last error reported at or after `since`.
    pub fn since(&self, since: Instant) -> Option<ClientError> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .filter(|e| e.at >= since)
    }

    /// The last refusal (credentials, TLS) reported at or after `since`.
    pub fn refused_since(&self, since: Instant) -> Option<ClientError> {
        self.since(since).filter(|e| e.refused)
    }
}

/// Pure: does this error code mean the brokers refused the client's credentials or TLS?
pub fn is_refusal(code: Option<RDKafkaErrorCode>) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        code,
        Some(
            C::Authentication
                | C::SSL
                | C::SaslAuthenticationFailed
                | C::UnsupportedSASLMechanism
                | C::IllegalSASLState
        )
    )
}

/// Client context of every audit client.
#[derive(Clone, Default)]
pub struct AuditContext {
    pub errors: ClientErrors,
}

impl ClientContext for AuditContext {
    fn error(&self, error: KafkaError, reason: &str) {
        let refused = is_refusal(error.rdkafka_error_code());
        tracing::debug!(%error, reason, refused, "audit Kafka client error");
        self.errors.set(ClientError {
            at: Instant::now(),
            refused,
            reason: reason.to_string(),
        });
    }
}

impl ConsumerContext for AuditContext {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn refusals_are_told_from_passing_trouble_and_old_errors_are_ignored() {
        assert!(is_refusal(Some(RDKafkaErrorCode::Authentication)));
        assert!(is_refusal(Some(RDKafkaErrorCode::SSL)));
        assert!(is_refusal(Some(RDKafkaErrorCode::SaslAuthenticationFailed)));
        assert!(!is_refusal(Some(RDKafkaErrorCode::AllBrokersDown)));
        assert!(!is_refusal(None));
        let ctx = AuditContext::default();
        let before = Instant::now();
        ctx.error(
            KafkaError::Global(RDKafkaErrorCode::Authentication),
            "SASL authentication error: Authentication failed",
        );
        let e = ctx.errors.refused_since(before).expect("a refusal");
        assert!(e.reason.contains("SASL authentication"));
        let later = Instant::now() + Duration::from_secs(1);
        assert!(ctx.errors.since(later).is_none(), "older than asked");
        ctx.error(
            KafkaError::Global(RDKafkaErrorCode::AllBrokersDown),
            "1/1 brokers are down",
        );
        assert!(
            ctx.errors.refused_since(before).is_none(),
            "the last error counts"
        );
        assert!(ctx.errors.since(before).is_some());
    }
}
