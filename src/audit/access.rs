//! How to reach the Kafka cluster an audit chain lives on: its bootstrap servers and the
//! librdkafka client properties (SASL/TLS) from the pair's `spec.replication.kafka.secretRef`
//! Secret — the same settings the pair's replication uses.
//!
//! Contract:
//! - [`AuditKafka`] never shows a credential: its `Debug` prints the values of a short list
//!   of non-secret properties (`security.protocol`, `sasl.mechanism`, …) and `<redacted>`
//!   for every other value, and [`AuditKafka::scrub`] removes those values from any text
//!   (error messages of librdkafka may quote a property's value).
//! - [`pair_kafka`] reads the Secret with the caller's own client (the operator's, or the
//!   on-call user's in `kubectl understudy`); a refused read names the RBAC that is missing.
//! - [`parse_properties`] reads a Kafka client properties file (`key=value` a line).

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::Api;

use crate::api::AccountPair;

/// Properties whose values are not secret and help to read a configuration.
const SHOWN: &[&str] = &[
    "security.protocol",
    "sasl.mechanism",
    "sasl.mechanisms",
    "ssl.endpoint.identification.algorithm",
    "enable.ssl.certificate.verification",
    "client.id",
];

/// Shortest value [`AuditKafka::scrub`] replaces (shorter ones would mangle any text).
const MIN_SCRUBBED: usize = 3;

/// One Kafka cluster and the client properties to reach it with.
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AuditKafka {
    /// Comma-separated `host:port` list.
    pub bootstrap: String,
    /// librdkafka properties (e.g. `security.protocol`, `sasl.mechanism`,
    /// `sasl.username`, `sasl.password`, `ssl.ca.pem`).
    pub properties: BTreeMap<String, String>,
}

impl AuditKafka {
    pub fn new(bootstrap: impl Into<String>, properties: BTreeMap<String, String>) -> Self {
        AuditKafka {
            bootstrap: bootstrap.into(),
            properties,
        }
    }

    /// A cluster reached without any client properties (PLAINTEXT).
    pub fn plain(bootstrap: impl Into<String>) -> Self {
        AuditKafka::new(bootstrap, BTreeMap::new())
    }

    /// From a Secret's data (values as bytes; librdkafka properties are text).
    pub fn from_secret_data(bootstrap: impl Into<String>, data: BTreeMap<String, Vec<u8>>) -> Self {
        AuditKafka::new(
            bootstrap,
            data.into_iter()
                .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
                .collect(),
        )
    }

    /// The properties with every value not known to be harmless replaced by `<redacted>`.
    pub fn redacted(&self) -> BTreeMap<&str, &str> {
        self.properties
            .iter()
            .map(|(k, v)| {
                let shown = SHOWN.contains(&k.as_str());
                (k.as_str(), if shown { v.as_str() } else { "<redacted>" })
            })
            .collect()
    }

    /// `text` with every redacted property value (of at least 3 characters) replaced
    /// by `<redacted>`: for error messages that may quote a configuration value.
    pub fn scrub(&self, text: &str) -> String {
        let secrets: Vec<&str> = self
            .properties
            .iter()
            .filter(|(k, v)| !SHOWN.contains(&k.as_str()) && v.len() >= MIN_SCRUBBED)
            .map(|(_, v)| v.as_str())
            .collect();
        scrub_values(text, &secrets)
    }
}

/// `text` with every occurrence of each of `values` replaced by `<redacted>`, longest
/// value first (so a value containing another is replaced whole). Shared by the Kafka
/// settings above and the plugin's support bundle.
pub fn scrub_values(text: &str, values: &[&str]) -> String {
    let mut sorted: Vec<&str> = values.iter().copied().filter(|v| !v.is_empty()).collect();
    sorted.sort_by_key(|s| std::cmp::Reverse(s.len()));
    let mut out = text.to_string();
    for s in sorted {
        if out.contains(s) {
            out = out.replace(s, "<redacted>");
        }
    }
    out
}

impl fmt::Debug for AuditKafka {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditKafka")
            .field("bootstrap", &self.bootstrap)
            .field("properties", &self.redacted())
            .finish()
    }
}

/// Why a pair's Kafka settings could not be read.
#[derive(Debug, thiserror::Error)]
pub enum KafkaSecretError {
    #[error(
        "Secret {namespace}/{name} (spec.replication.kafka.secretRef of AccountPair {pair}: its Kafka SASL/TLS settings) does not exist: create it or fix the reference"
    )]
    Missing {
        namespace: String,
        name: String,
        pair: String,
    },
    #[error(
        "reading Secret {namespace}/{name} (spec.replication.kafka.secretRef of AccountPair {pair}: its Kafka SASL/TLS settings) is forbidden: {message}. This needs `get` on secrets named {name:?} in namespace {namespace} (e.g. a Role with rules [{{apiGroups: [\"\"], resources: [secrets], resourceNames: [{name}], verbs: [get]}}] bound to the user)"
    )]
    Forbidden {
        namespace: String,
        name: String,
        pair: String,
        message: String,
    },
    #[error(
        "reading Secret {namespace}/{name} (the Kafka settings of AccountPair {pair}) failed: {source}"
    )]
    Api {
        namespace: String,
        name: String,
        pair: String,
        source: kube::Error,
    },
}

/// The pair's Kafka: its bootstrap servers and the properties of its
/// `spec.replication.kafka.secretRef` Secret (none without a reference), read with `client`.
pub async fn pair_kafka(
    client: &Client,
    pair: &AccountPair,
) -> Result<AuditKafka, KafkaSecretError> {
    let kafka = &pair.spec.replication.kafka;
    let Some(r) = &kafka.secret_ref else {
        return Ok(AuditKafka::plain(&kafka.bootstrap_servers));
    };
    let namespace = pair.metadata.namespace.clone().unwrap_or_default();
    let pair_name = pair.metadata.name.clone().unwrap_or_default();
    let api: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let secret = match api.get_opt(&r.name).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            return Err(KafkaSecretError::Missing {
                namespace,
                name: r.name.clone(),
                pair: pair_name,
            });
        }
        Err(kube::Error::Api(s)) if s.code == 403 => {
            return Err(KafkaSecretError::Forbidden {
                namespace,
                name: r.name.clone(),
                pair: pair_name,
                message: s.message.clone(),
            });
        }
        Err(source) => {
            return Err(KafkaSecretError::Api {
                namespace,
                name: r.name.clone(),
                pair: pair_name,
                source,
            });
        }
    };
    let mut data: BTreeMap<String, Vec<u8>> = secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect();
    for (k, v) in secret.string_data.unwrap_or_default() {
        data.insert(k, v.into_bytes());
    }
    Ok(AuditKafka::from_secret_data(&kafka.bootstrap_servers, data))
}

/// A Kafka client properties file: `key=value` (or `key: value`) a line, `#`/`!` comments
/// and blank lines ignored, whitespace around keys and values trimmed. `Err` names the
/// first line that is not a property (by number, never by content: it may be a secret).
pub fn parse_properties(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
            continue;
        }
        let split = line.find(['=', ':']);
        let Some(at) = split else {
            return Err(format!("line {} is not key=value", i + 1));
        };
        let (k, v) = (line[..at].trim(), line[at + 1..].trim());
        if k.is_empty() {
            return Err(format!("line {} has no key before '='", i + 1));
        }
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sasl() -> AuditKafka {
        AuditKafka::new(
            "k:9094",
            [
                ("security.protocol", "SASL_PLAINTEXT"),
                ("sasl.mechanism", "PLAIN"),
                ("sasl.username", "understudy"),
                ("sasl.password", "s3cr3t-pw"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        )
    }

    #[test]
    fn debug_output_never_carries_a_credential() {
        let text = format!("{:?}", sasl());
        assert!(!text.contains("s3cr3t-pw"), "{text}");
        assert!(
            !text.contains("understudy\""),
            "user names are redacted too: {text}"
        );
        assert!(
            text.contains("SASL_PLAINTEXT") && text.contains("PLAIN"),
            "{text}"
        );
        assert!(
            text.contains("sasl.password") && text.contains("<redacted>"),
            "{text}"
        );
    }

    #[test]
    fn scrub_removes_secret_values_from_messages() {
        let k = sasl();
        let msg = "Invalid value \"s3cr3t-pw\" for sasl.password; user understudy; SASL_PLAINTEXT";
        let out = k.scrub(msg);
        assert!(!out.contains("s3cr3t-pw"), "{out}");
        assert!(!out.contains("understudy"), "{out}");
        assert!(
            out.contains("SASL_PLAINTEXT"),
            "harmless values stay: {out}"
        );
    }

    #[test]
    fn properties_files_parse_and_bad_lines_are_named_by_number() {
        let p = parse_properties(
            "# SASL\nsecurity.protocol = SASL_SSL\n\nsasl.password=a=b\n! bang\nsasl.mechanism: PLAIN\n",
        )
        .unwrap();
        assert_eq!(p["security.protocol"], "SASL_SSL");
        assert_eq!(p["sasl.password"], "a=b");
        assert_eq!(p["sasl.mechanism"], "PLAIN");
        let e = parse_properties("a=1\nsecretvalue\n").unwrap_err();
        assert_eq!(e, "line 2 is not key=value");
        assert!(parse_properties("=x").is_err());
    }
}
