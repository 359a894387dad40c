//! The simulated apps' error answers and clock, shared by every file of the Agora
//! simulator. A leaf: it imports none of its siblings.

/// Unix milliseconds.
pub type Millis = u64;

/// The documented default budget: 100 calls a second per App Key.
pub const DEFAULT_RATE: u32 = 100;

/// An error answer: its HTTP status and `{"error","exception","error_description"}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChatError {
    pub status: u16,
    pub error: &'static str,
    pub exception: &'static str,
    pub description: String,
}

const NOT_FOUND_EXC: &str =
    "org.apache.usergrid.services.exceptions.ServiceResourceNotFoundException";
/// [UNCONFIRMED]: no page shows the exception of an `illegal_argument`.
const ILLEGAL_EXC: &str = "java.lang.IllegalArgumentException";

impl ChatError {
    pub(super) fn new(
        status: u16,
        error: &'static str,
        exception: &'static str,
        d: impl Into<String>,
    ) -> Self {
        ChatError {
            status,
            error,
            exception,
            description: d.into(),
        }
    }

    pub fn illegal_argument(d: impl Into<String>) -> Self {
        Self::new(400, "illegal_argument", ILLEGAL_EXC, d)
    }

    /// Group fields (group_create.md); exception [UNCONFIRMED].
    pub fn invalid_parameter(d: impl Into<String>) -> Self {
        Self::new(
            400,
            "invalid_parameter",
            "EasemobInvalidParameterException",
            d,
        )
    }

    /// Exception [UNCONFIRMED].
    pub fn json_parse(d: impl Into<String>) -> Self {
        Self::new(
            400,
            "json_parse",
            "com.fasterxml.jackson.core.JsonParseException",
            d,
        )
    }

    /// A username taken (Easemob REST doc 400 example).
    pub fn duplicate(username: &str) -> Self {
        Self::new(
            400,
            "duplicate_unique_property_exists",
            "org.apache.usergrid.persistence.exceptions.DuplicateUniquePropertyExistsException",
            format!(
                "Application null Entity user requires that property named username be unique, value of {username} exists"
            ),
        )
    }

    pub fn unauthorized(d: impl Into<String>) -> Self {
        Self::new(
            401,
            "unauthorized",
            "org.apache.shiro.authz.UnauthorizedException",
            d,
        )
    }

    pub fn bad_token(d: impl Into<String>) -> Self {
        Self::new(
            401,
            "auth_bad_access_token",
            "org.apache.usergrid.rest.exceptions.SecurityException",
            d,
        )
    }

    /// `EasemobForbiddenOpException` (Easemob message-recall page example).
    pub fn forbidden_op(d: impl Into<String>) -> Self {
        Self::new(403, "forbidden_op", "EasemobForbiddenOpException", d)
    }

    /// Group limits (group_create.md); exception [UNCONFIRMED].
    pub fn exceed_limit(d: impl Into<String>) -> Self {
        Self::new(403, "exceed_limit", "EasemobExceedLimitException", d)
    }

    /// A user, group or member that does not exist.
    pub fn not_found() -> Self {
        Self::new(
            404,
            "service_resource_not_found",
            NOT_FOUND_EXC,
            "Service resource not found",
        )
    }

    /// Group creation naming a user that does not exist (group_create.md).
    pub fn resource_not_found(d: impl Into<String>) -> Self {
        Self::new(404, "resource_not_found", NOT_FOUND_EXC, d)
    }

    pub fn app_not_found(org: &str, app: &str, path: &str) -> Self {
        Self::new(
            404,
            "organization_application_not_found",
            "org.apache.usergrid.rest.exceptions.OrganizationApplicationNotFoundException",
            format!("Could not find application for {org}/{app} from URI: {org}/{app}{path}"),
        )
    }

    /// A suspended (frozen) app: "Service operation not allowed — app 或用户被封禁" (Easemob
    /// user-check page's error table). Exception [UNCONFIRMED].
    pub fn forbidden_service() -> Self {
        Self::new(
            403,
            "forbidden_service_operation",
            "EasemobForbiddenServiceOperationException",
            "Service operation not allowed",
        )
    }

    /// An injected server failure. Error code and exception [UNCONFIRMED].
    pub fn unavailable(d: impl Into<String>) -> Self {
        Self::new(
            503,
            "service_unavailable",
            "EasemobServiceUnavailableException",
            d,
        )
    }

    /// Exception [UNCONFIRMED].
    pub fn reach_limit() -> Self {
        Self::new(
            429,
            "reach_limit",
            "EasemobTooManyRequestsException",
            "This request has reached api limit",
        )
    }
}
