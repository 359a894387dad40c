//! What an Agora Chat REST answer means for understudy. Agora Chat answers errors with an
//! HTTP status and `{"error": "…", "error_description": "…"}` (Agora's "HTTP status
//! codes" page; Easemob's `error.md`, whose API Agora Chat is).
//!
//! - 429 (`reach_limit`, `resource_limited`): a rate limit, never a freeze.
//! - 401 on an app whose calls were answered before, or 403 on the status probe: freeze
//!   evidence — **unconfirmed**: Agora documents no code for a suspended app. Easemob
//!   answers 403 `forbidden_service_operation` ("Service operation not allowed") for a
//!   banned app or user; a 401 with a token the operator signed itself means the app no
//!   longer accepts it (its certificate disabled or the app suspended). A 401 before any
//!   call was ever answered is a wrong App ID or certificate: `Unauthorized`.
//!   Rotating the App Certificate therefore looks like a freeze: pause the pair first.
//! - 403 on a write (`forbidden_op`, `exceed_limit`): the write is refused (DLQ).
//! - 404: not found; 400: the entity is invalid (DLQ); 5xx or no answer: unavailable.
//!
//! Anything else is `Protocol` — Unknown for the detector, never a freeze.

use std::time::Duration;

use crate::provider::ProviderError;

/// Where a call was made from, which decides what a 403 means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// The status probe (`GET /users?limit=1`): a 403 there refuses the whole app.
    App,
    /// A read or a write of one entity: a 403 refuses that operation.
    Operation,
}

/// The error of a non-2xx answer.
pub fn classify(
    status: u16,
    error: &str,
    description: &str,
    worked_before: bool,
    scope: Scope,
    retry_after: Option<Duration>,
) -> ProviderError {
    let said = format!("Agora Chat HTTP {status} {error}: {description}");
    match status {
        429 => ProviderError::RateLimited {
            retry_after: retry_after.unwrap_or(Duration::from_secs(1)),
        },
        401 if worked_before => ProviderError::AccountFrozen {
            reason: format!(
                "the app refuses the operator's own app token after accepting it (unconfirmed as a suspension: Agora documents no code for one) ({said})"
            ),
        },
        401 => ProviderError::Unauthorized(format!(
            "the app refused the app token: check the appId and appCertificate in the credentials Secret ({said})"
        )),
        403 if scope == Scope::App => ProviderError::AccountFrozen {
            reason: format!(
                "the app refuses every operation (unconfirmed as a suspension: Easemob's answer for a banned app) ({said})"
            ),
        },
        403 | 400 | 413 => ProviderError::Rejected(said),
        404 => ProviderError::NotFound(said),
        500..=599 => ProviderError::Unavailable(said),
        _ => ProviderError::Protocol(said),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detection::signal::ErrorEvidence;

    fn freeze(e: &ProviderError) -> bool {
        matches!(ErrorEvidence::from(e), ErrorEvidence::Stopped { .. })
    }

    #[test]
    fn a_refusal_after_working_is_freeze_evidence_and_a_first_one_is_not() {
        let e = classify(
            401,
            "unauthorized",
            "Unable to authenticate",
            true,
            Scope::App,
            None,
        );
        assert!(freeze(&e), "{e}");
        assert!(e.to_string().contains("unconfirmed"), "{e}");
        let first = classify(401, "unauthorized", "x", false, Scope::App, None);
        assert!(matches!(first, ProviderError::Unauthorized(_)));
        assert!(!freeze(&first));
        let suspended = classify(
            403,
            "forbidden_service_operation",
            "Service operation not allowed",
            true,
            Scope::App,
            None,
        );
        assert!(freeze(&suspended));
    }

    #[test]
    fn rate_limits_and_refused_writes_are_never_a_freeze() {
        for (status, error) in [(429, "reach_limit"), (429, "resource_limited")] {
            let e = classify(
                status,
                error,
                "x",
                true,
                Scope::App,
                Some(Duration::from_secs(2)),
            );
            assert_eq!(
                e,
                ProviderError::RateLimited {
                    retry_after: Duration::from_secs(2)
                }
            );
            assert!(!freeze(&e));
        }
        let write = classify(
            403,
            "forbidden_op",
            "users [a] are not members",
            true,
            Scope::Operation,
            None,
        );
        assert!(matches!(write, ProviderError::Rejected(_)));
        for status in [400, 404, 500, 503, 418] {
            assert!(
                !freeze(&classify(status, "e", "d", true, Scope::App, None)),
                "{status}"
            );
        }
    }
}
