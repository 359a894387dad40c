//! The drill schedule: a standard 5-field cron expression (minute hour day-of-month
//! month day-of-week) or one of the `@monthly`-style macros.
//!
//! The API server checks the shape with a CEL `matches()` rule built from
//! [`cron_regex`], so `kubectl apply` rejects `0 25 * * *` with a message; the operator
//! parses it again with `croner` to compute slots. A unit test keeps the two in step.

use std::borrow::Cow;
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

/// A cron schedule as written in the spec.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CronSchedule(pub String);

impl fmt::Display for CronSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a schedule is not usable.
#[derive(Debug, thiserror::Error)]
pub enum CronError {
    #[error(
        "schedule {0:?} is not a 5-field cron expression (minute hour day-of-month month day-of-week) or @yearly/@monthly/@weekly/@daily/@hourly"
    )]
    Shape(String),
    #[error("schedule {0:?} cannot be parsed: {1}")]
    Parse(String, String),
}

/// [`cron_regex`] compiled once: the drill schedule loop parses every pair's schedule
/// every pass.
static SHAPE: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
    regex::Regex::new(&cron_regex()).expect("the cron pattern is a valid regex (tested)")
});

impl CronSchedule {
    /// Parse into a `croner::Cron` after the same shape check the API server applies.
    pub fn parse(&self) -> Result<croner::Cron, CronError> {
        if !SHAPE.is_match(&self.0) {
            return Err(CronError::Shape(self.0.clone()));
        }
        croner::parser::CronParser::new()
            .parse(&self.0)
            .map_err(|e| CronError::Parse(self.0.clone(), e.to_string()))
    }
}

/// The RE2 pattern (valid for both CEL's `matches()` and the `regex` crate) that a
/// schedule must match: each field's numbers are range-checked, names are allowed for
/// months and weekdays, and lists, ranges and steps are allowed as in Vixie cron.
pub fn cron_regex() -> String {
    let field = |value: &str| {
        let item = format!(r"([*]|{value}(-{value})?)(/[1-9][0-9]?)?");
        format!("{item}(,{item})*")
    };
    let minute = r"([0-5]?[0-9])";
    let hour = r"([01]?[0-9]|2[0-3])";
    let dom = r"(0?[1-9]|[12][0-9]|3[01])";
    let month = r"(0?[1-9]|1[0-2]|JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC|jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)";
    let dow = r"([0-7]|SUN|MON|TUE|WED|THU|FRI|SAT|sun|mon|tue|wed|thu|fri|sat)";
    format!(
        r"^(@(yearly|annually|monthly|weekly|daily|hourly)|{} +{} +{} +{} +{})$",
        field(minute),
        field(hour),
        field(dom),
        field(month),
        field(dow)
    )
}

impl JsonSchema for CronSchedule {
    fn schema_name() -> Cow<'static, str> {
        "CronSchedule".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "minLength": 1,
            "maxLength": 128,
            "x-kubernetes-validations": [{
                "rule": format!("self.matches('{}')", cron_regex()),
                "message": "must be a 5-field cron expression (minute hour day-of-month month day-of-week) with values in range, e.g. '0 3 1 * *', or @monthly/@weekly/@daily/@hourly"
            }]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_standard_schedules_and_croner_agrees() {
        for s in [
            "0 3 1 * *",
            "*/5 * * * *",
            "0 0 * * MON-FRI",
            "15,45 9-17 * JAN,JUL 1-5",
            "59 23 31 12 7",
            "0 3 1 */3 *",
            "@monthly",
            "@daily",
        ] {
            let c = CronSchedule(s.to_string());
            assert!(
                c.parse().is_ok(),
                "{s} should be accepted: {:?}",
                c.parse().err()
            );
        }
    }

    #[test]
    fn rejects_out_of_range_and_malformed() {
        for s in [
            "",
            "0 24 * * *",
            "60 * * * *",
            "0 0 32 * *",
            "0 0 0 * *",
            "0 0 * 13 *",
            "0 0 * * 8",
            "* * * *",
            "* * * * * *",
            "@every 5m",
            "0 3 1 * * ; rm",
            "*/0 * * * *",
            "a b c d e",
        ] {
            let c = CronSchedule(s.to_string());
            assert!(c.parse().is_err(), "{s:?} should be rejected");
        }
    }

    #[test]
    fn pattern_is_embedded_in_cel_without_quotes_breaking_it() {
        // The rule is a single-quoted CEL string, where a quote would end it early and a
        // backslash would start an escape sequence CEL rejects.
        assert!(!cron_regex().contains('\''));
        assert!(!cron_regex().contains('\\'));
    }
}
