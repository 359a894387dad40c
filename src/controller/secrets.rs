//! Reading the Secrets a pair refers to. Values are returned as bytes and never logged;
//! errors name the Secret and key so the user knows what to create.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::Api;

use crate::api::SecretKeyRef;

/// Why a secret value could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("Secret {namespace}/{name} not found: create it (see the AccountPair's {field})")]
    Missing {
        namespace: String,
        name: String,
        field: String,
    },
    #[error("Secret {namespace}/{name} has no key {key:?} (needed by {field})")]
    MissingKey {
        namespace: String,
        name: String,
        key: String,
        field: String,
    },
    #[error("reading Secret {namespace}/{name} failed: {source}")]
    Api {
        namespace: String,
        name: String,
        source: kube::Error,
    },
}

impl SecretError {
    /// The user must change something (vs. a transient API error).
    pub fn is_user_error(&self) -> bool {
        !matches!(self, SecretError::Api { .. })
    }
}

/// All keys of a Secret.
pub async fn read_all(
    client: &Client,
    namespace: &str,
    name: &str,
    field: &str,
) -> Result<BTreeMap<String, Vec<u8>>, SecretError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret = api
        .get_opt(name)
        .await
        .map_err(|source| SecretError::Api {
            namespace: namespace.into(),
            name: name.into(),
            source,
        })?
        .ok_or_else(|| SecretError::Missing {
            namespace: namespace.into(),
            name: name.into(),
            field: field.into(),
        })?;
    let mut out: BTreeMap<String, Vec<u8>> = secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect();
    for (k, v) in secret.string_data.unwrap_or_default() {
        out.insert(k, v.into_bytes());
    }
    Ok(out)
}

/// One key of the referenced Secret (`default_key` when the reference names none).
pub async fn read_key(
    client: &Client,
    namespace: &str,
    r: &SecretKeyRef,
    default_key: &str,
    field: &str,
) -> Result<Vec<u8>, SecretError> {
    let key = r.key.clone().unwrap_or_else(|| default_key.to_string());
    let mut all = read_all(client, namespace, &r.name, field).await?;
    all.remove(&key).ok_or_else(|| SecretError::MissingKey {
        namespace: namespace.into(),
        name: r.name.clone(),
        key,
        field: field.into(),
    })
}
