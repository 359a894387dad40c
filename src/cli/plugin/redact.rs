//! Redaction for the support bundle: every text written goes through [`Redactor::text`].
//!
//! Two layers:
//! - known values: the values of the Secrets of the namespaces in the bundle (read with
//!   the user's credentials, never written), also base64-encoded and line by line, are
//!   replaced wherever they appear ([`crate::audit::access::scrub_values`], the same
//!   replacement `evidence` applies to the Kafka settings);
//! - shapes: what looks like a credential whatever its value — `password: …`,
//!   `token=…`, `"apiKey": "…"`, `Authorization: Bearer …`, JWTs, PEM private keys and
//!   `user:password@` in URLs.

use std::sync::LazyLock;

use base64::Engine;
use regex::Regex;

use crate::audit::access::scrub_values;

/// Shorter known values are not searched for: they would match ordinary words.
pub const MIN_KNOWN: usize = 6;

pub const REDACTED: &str = "<redacted>";

/// Key names whose value is a credential (matched as a whole word, any case).
const KEY_WORDS: &str = r"password|passwd|passphrase|pwd|secret|client[_-]?secret|token|access[_-]?token|refresh[_-]?token|api[_-]?key|access[_-]?key|secret[_-]?key|private[_-]?key|credentials?|sasl\.password|encoding[_-]?aes[_-]?key|aes[_-]?key";

static KEY_VALUE: LazyLock<Regex> = LazyLock::new(|| {
    // key, separator (`:` or `=`, quotes and blanks on the same line), then the value up
    // to a blank, quote, comma, semicolon, `&` or closing brace. A value that opens a
    // block or a map (`{`, `[`, `|`, `>`) is structure, not a secret, and is kept.
    Regex::new(&format!(
        r#"(?i)(\b(?:{KEY_WORDS})\b["']?[ \t]*[:=][ \t]*["']?)([^\s"',;&}}{{\[|>][^\s"',;&}}]*)"#
    ))
    .expect("key-value pattern")
});
static BEARER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b(bearer|basic)[ \t]+[A-Za-z0-9\-._~+/]+=*").expect("bearer pattern")
});
static JWT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*").expect("jwt")
});
static PEM_KEY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z0-9 ]*PRIVATE KEY-----")
        .expect("pem pattern")
});
static URL_USERINFO: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@]+:)[^/\s@]+@").expect("url pattern")
});

static CREDENTIAL_NAME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)(password|passwd|passphrase|secret|token|api_?key|access_?key|private_?key|credential|aes_?key)")
        .expect("credential name pattern")
});

/// Pure: does an environment variable (or similar) name say its value is a credential
/// (`KAFKA_PASSWORD`, `API_TOKEN`, `clientSecret`)?
pub fn is_credential_name(name: &str) -> bool {
    CREDENTIAL_NAME.is_match(name)
}

/// Pure: `text` with every credential-shaped fragment replaced by `<redacted>`.
pub fn redact_shapes(text: &str) -> String {
    let t = PEM_KEY.replace_all(text, "<redacted private key>");
    let t = JWT.replace_all(&t, REDACTED);
    let t = BEARER.replace_all(&t, format!("$1 {REDACTED}").as_str());
    let t = URL_USERINFO.replace_all(&t, format!("${{1}}{REDACTED}@").as_str());
    let t = KEY_VALUE.replace_all(&t, format!("${{1}}{REDACTED}").as_str());
    t.into_owned()
}

/// Pure: the fragments to search for, from one Secret value: the value, its base64
/// form, each of its lines and, for `key=value` / `key: value` lines, the value.
pub fn fragments_of(value: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut add = |s: &str| {
        let s = s.trim();
        if s.len() >= MIN_KNOWN && !out.iter().any(|o: &String| o == s) {
            out.push(s.to_string());
        }
    };
    add(&base64::engine::general_purpose::STANDARD.encode(value));
    let Ok(text) = std::str::from_utf8(value) else {
        return out;
    };
    add(text);
    for line in text.lines() {
        add(line);
        if let Some((_, v)) = line.split_once('=').or_else(|| line.split_once(':')) {
            add(v.trim().trim_matches(|c| c == '"' || c == '\''));
        }
    }
    out
}

/// The redaction of one bundle.
#[derive(Default)]
pub struct Redactor {
    known: Vec<String>,
}

impl Redactor {
    /// With the values of the given Secrets (`data` values, as stored).
    pub fn with_values<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Self {
        let mut known: Vec<String> = values.into_iter().flat_map(fragments_of).collect();
        known.sort();
        known.dedup();
        Redactor { known }
    }

    /// How many fragments are searched for.
    pub fn known(&self) -> usize {
        self.known.len()
    }

    /// Pure: `text` with the known values and every credential shape redacted.
    pub fn text(&self, text: &str) -> String {
        let known: Vec<&str> = self.known.iter().map(String::as_str).collect();
        redact_shapes(&scrub_values(text, &known))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_shapes_are_redacted_and_structure_kept() {
        let cases = [
            ("password: hunter22", "password: <redacted>"),
            ("sasl.password=pl41n-t3xt", "sasl.password=<redacted>"),
            (
                r#"{"apiKey": "k-123456", "name": "x"}"#,
                r#"{"apiKey": "<redacted>", "name": "x"}"#,
            ),
            ("TOKEN=abc123def; next", "TOKEN=<redacted>; next"),
            (
                "Authorization: Bearer abc.def-ghi",
                "Authorization: Bearer <redacted>",
            ),
            (
                "kafka://svc:s3cret@broker:9092",
                "kafka://svc:<redacted>@broker:9092",
            ),
            (
                "jwt eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW0ifQ.c2lnbmF0dXJl end",
                "jwt <redacted> end",
            ),
            (
                "-----BEGIN RSA PRIVATE KEY-----\nMIIB\n-----END RSA PRIVATE KEY-----",
                "<redacted private key>",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(redact_shapes(input), want, "{input}");
        }
        // Names of Secrets, references and block openers are not values.
        for kept in [
            "credentialsSecretRef:\n  name: token",
            "secretRef: {name: kafka}",
            "tokenSecretRef: agora",
            "secret:\n  name: x",
            "reason: token expired",
            "key: primary/member/42",
        ] {
            assert_eq!(redact_shapes(kept), kept);
        }
    }

    #[test]
    fn credential_names_are_recognised() {
        for yes in [
            "KAFKA_PASSWORD",
            "API_TOKEN",
            "clientSecret",
            "WECOM_AES_KEY",
            "ApiKey",
        ] {
            assert!(is_credential_name(yes), "{yes}");
        }
        for no in [
            "RUST_LOG",
            "POD_NAME",
            "KAFKA_BOOTSTRAP",
            "UNDERSTUDY_AUDIT_TOPIC",
        ] {
            assert!(!is_credential_name(no), "{no}");
        }
    }

    #[test]
    fn known_values_are_replaced_in_any_form() {
        let r = Redactor::with_values([
            b"s3cr3t-value".as_slice(),
            b"security.protocol=SASL_SSL\nsasl.password=pr0p-pass\n".as_slice(),
            b"abc".as_slice(),
        ]);
        let b64 = base64::engine::general_purpose::STANDARD.encode("s3cr3t-value");
        let out = r.text(&format!(
            "note: login failed with s3cr3t-value\nraw {b64}\nlog: using pr0p-pass now, abc stays"
        ));
        assert!(!out.contains("s3cr3t-value"), "{out}");
        assert!(!out.contains(&b64), "{out}");
        assert!(!out.contains("pr0p-pass"), "{out}");
        assert!(
            out.contains("abc stays"),
            "values under {MIN_KNOWN} chars are left: {out}"
        );
        assert!(out.contains("note: login failed with <redacted>"), "{out}");
    }
}
