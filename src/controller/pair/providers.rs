//! Each side's provider, built from the pair's spec and its Secrets.
//!
//! - `provider: http`: the Provider API client with the bearer token.
//! - `provider: wecom`: the WeCom adapter, wrapped in a [`SyntheticFeed`] because WeCom
//!   has no change feed: its callbacks (the `/webhooks/wecom/…` route) name what to read
//!   again, and a reconciliation scan every `spec.replication.reconcileInterval` catches
//!   what a lost callback missed. The feed's first scan compares the corp with the
//!   pair's compacted state topic (what was replicated last), so what changed while the
//!   operator was not running — deletes included — is replicated too.
//! - `provider: officialAccount` and `provider: agoraChat`: the adapter in a
//!   [`SyntheticFeed`] with the same baseline; the reconciliation scan is how changes are
//!   seen, and for an Agora Chat app with a callback rule also its callbacks (the
//!   `/webhooks/agora/…` route).

use std::collections::BTreeMap;
use std::sync::Arc;

use kube::Client;

use super::StartError;
use crate::api::account_pair::{AccountRef, ProviderKind};
use crate::api::{AccountPairSpec, Side};
use crate::controller::secrets;
use crate::drills::KafkaCopyConfig;
use crate::model::{Digest, EntityKey};
use crate::provider::AccountProvider;
use crate::provider::agora::AgoraChatProvider;
use crate::provider::cgibin::client::ClientOptions;
use crate::provider::feedless::{Baseline, DEFAULT_RETENTION, Scan, SyntheticFeed};
use crate::provider::http::HttpProvider;
use crate::provider::officialaccount::OfficialAccountProvider;
use crate::provider::wecom::crypto::CallbackCrypto;
use crate::provider::wecom::provider::WecomProvider;

/// One WeCom side: its feed (hints and scans) and, when a callback is configured, what
/// opens its callbacks.
pub struct WecomSide {
    pub corp_id: String,
    pub crypto: Option<CallbackCrypto>,
    pub feed: Arc<SyntheticFeed<WecomProvider>>,
}

/// One Agora Chat side: its feed and, when a callback rule is configured, the rule's
/// secret that signs its callbacks.
pub struct AgoraSide {
    pub app_key: String,
    pub callback_secret: Option<String>,
    pub feed: Arc<SyntheticFeed<AgoraChatProvider>>,
}

/// Never prints the callback secret.
impl std::fmt::Debug for AgoraSide {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgoraSide")
            .field("app_key", &self.app_key)
            .field("callback", &self.callback_secret.is_some())
            .finish_non_exhaustive()
    }
}

/// Both sides' providers.
pub struct Providers {
    pub sides: [Arc<dyn AccountProvider>; 2],
    /// `Some` for a WeCom side.
    pub wecom: [Option<Arc<WecomSide>>; 2],
    /// `Some` for an Agora Chat side.
    pub agora: [Option<Arc<AgoraSide>>; 2],
    /// `Some` for a side without a change feed: what the reconciliation loop scans.
    pub scans: [Option<Arc<dyn Scan>>; 2],
}

/// One side as [`build`] builds it.
struct BuiltSide {
    provider: Arc<dyn AccountProvider>,
    wecom: Option<Arc<WecomSide>>,
    agora: Option<Arc<AgoraSide>>,
    scan: Option<Arc<dyn Scan>>,
}

/// Reads the Secrets and builds both sides, the two at once (each side's Secrets are
/// read from the API server, which answers slowly when many pairs start together, e.g.
/// on a shard taken over).
pub async fn build(
    client: &Client,
    (namespace, name): (&str, &str),
    spec: &AccountPairSpec,
) -> Result<Providers, StartError> {
    let baseline = TopicBaseline::for_pair(client, (namespace, name), spec).await;
    let (primary, standby) = tokio::join!(
        build_side(client, namespace, Side::Primary, &spec.primary, &baseline),
        build_side(client, namespace, Side::Standby, &spec.standby, &baseline),
    );
    // The primary's error first, whichever answered first, so the message is the same on
    // every attempt.
    let (primary, standby) = (primary?, standby?);
    Ok(Providers {
        sides: [primary.provider, standby.provider],
        wecom: [primary.wecom, standby.wecom],
        agora: [primary.agora, standby.agora],
        scans: [primary.scan, standby.scan],
    })
}

async fn build_side(
    client: &Client,
    namespace: &str,
    side: Side,
    account: &AccountRef,
    baseline: &TopicBaseline,
) -> Result<BuiltSide, StartError> {
    Ok(match account.provider {
        ProviderKind::Http => BuiltSide {
            provider: http(client, namespace, side, account).await?,
            wecom: None,
            agora: None,
            scan: None,
        },
        ProviderKind::Wecom => {
            let w = Arc::new(wecom_side(client, namespace, side, account, baseline.clone()).await?);
            BuiltSide {
                provider: Arc::new(w.feed.clone()) as Arc<dyn AccountProvider>,
                scan: Some(w.feed.clone() as Arc<dyn Scan>),
                wecom: Some(w),
                agora: None,
            }
        }
        ProviderKind::OfficialAccount => {
            let feed = official_account(client, namespace, side, account, baseline.clone()).await?;
            BuiltSide {
                provider: Arc::new(feed.clone()) as Arc<dyn AccountProvider>,
                scan: Some(feed as Arc<dyn Scan>),
                wecom: None,
                agora: None,
            }
        }
        ProviderKind::AgoraChat => {
            let feed = agora_chat(client, namespace, side, account, baseline.clone()).await?;
            let callback_secret = match &account.callback {
                None => None,
                Some(cb) => {
                    let r = crate::api::SecretKeyRef {
                        name: cb.secret_ref.name.clone(),
                        key: Some("secret".into()),
                    };
                    Some(text(client, namespace, side, &r, "secret", "callback.secretRef").await?)
                }
            };
            BuiltSide {
                provider: Arc::new(feed.clone()) as Arc<dyn AccountProvider>,
                scan: Some(feed.clone() as Arc<dyn Scan>),
                wecom: None,
                agora: Some(Arc::new(AgoraSide {
                    app_key: account.id().to_string(),
                    callback_secret,
                    feed,
                })),
            }
        }
    })
}

/// One side's provider, built as [`build`] builds it (same Secrets, same adapter): for a
/// reader of that side alone, e.g. `kubectl understudy evidence` reading its activity
/// with the user's own credentials.
pub async fn side(
    client: &Client,
    (namespace, name): (&str, &str),
    spec: &AccountPairSpec,
    side: Side,
) -> Result<Arc<dyn AccountProvider>, StartError> {
    let account = match side {
        Side::Primary => &spec.primary,
        Side::Standby => &spec.standby,
    };
    let baseline = || TopicBaseline::for_pair(client, (namespace, name), spec);
    Ok(match account.provider {
        ProviderKind::Http => return http(client, namespace, side, account).await,
        ProviderKind::Wecom => {
            let w = wecom_side(client, namespace, side, account, baseline().await).await?;
            Arc::new(w.feed) as Arc<dyn AccountProvider>
        }
        ProviderKind::OfficialAccount => {
            let feed = official_account(client, namespace, side, account, baseline().await).await?;
            Arc::new(feed) as Arc<dyn AccountProvider>
        }
        ProviderKind::AgoraChat => {
            let feed = agora_chat(client, namespace, side, account, baseline().await).await?;
            Arc::new(feed) as Arc<dyn AccountProvider>
        }
    })
}

async fn official_account(
    client: &Client,
    namespace: &str,
    side: Side,
    account: &AccountRef,
    baseline: TopicBaseline,
) -> Result<Arc<SyntheticFeed<OfficialAccountProvider>>, StartError> {
    let options = ClientOptions {
        api_base: account.api_base.clone(),
        ..ClientOptions::default()
    };
    let secret = text(
        client,
        namespace,
        side,
        &account.credentials_secret_ref,
        "secret",
        "credentialsSecretRef",
    )
    .await?;
    let provider = OfficialAccountProvider::new(account.id(), &secret, &options).map_err(|e| {
        StartError::Provider {
            side,
            detail: e.to_string(),
        }
    })?;
    Ok(SyntheticFeed::with_baseline(
        provider,
        DEFAULT_RETENTION,
        Some(Box::new(baseline)),
    ))
}

/// A Secret value as text (trimmed: a newline from `kubectl create secret --from-file`
/// is not part of a token).
async fn text(
    client: &Client,
    namespace: &str,
    side: Side,
    r: &crate::api::common::SecretKeyRef,
    default_key: &str,
    field: &str,
) -> Result<String, StartError> {
    let bytes = secrets::read_key(
        client,
        namespace,
        r,
        default_key,
        &format!("spec.{side}.{field}"),
    )
    .await?;
    let s = String::from_utf8(bytes).map_err(|_| StartError::Provider {
        side,
        detail: format!("the Secret named by spec.{side}.{field} holds a value that is not UTF-8"),
    })?;
    Ok(s.trim().to_string())
}

async fn http(
    client: &Client,
    namespace: &str,
    side: Side,
    account: &AccountRef,
) -> Result<Arc<dyn AccountProvider>, StartError> {
    let token = text(
        client,
        namespace,
        side,
        &account.credentials_secret_ref,
        "token",
        "credentialsSecretRef",
    )
    .await?;
    let p = HttpProvider::new(
        account.endpoint.as_deref().unwrap_or_default(),
        account.id(),
        Some(&token),
    )
    .map_err(|e| StartError::Provider {
        side,
        detail: e.to_string(),
    })?;
    Ok(Arc::new(p))
}

async fn wecom_side(
    client: &Client,
    namespace: &str,
    side: Side,
    account: &AccountRef,
    baseline: TopicBaseline,
) -> Result<WecomSide, StartError> {
    let corp_id = account.id().to_string();
    let unusable = |detail: String| StartError::Provider { side, detail };
    let options = ClientOptions {
        api_base: account.api_base.clone(),
        ..ClientOptions::default()
    };
    let secret = text(
        client,
        namespace,
        side,
        &account.credentials_secret_ref,
        "secret",
        "credentialsSecretRef",
    )
    .await?;
    let mut provider =
        WecomProvider::new(&corp_id, &secret, &options).map_err(|e| unusable(e.to_string()))?;
    if let Some(r) = &account.external_contact_secret_ref {
        let secret = text(
            client,
            namespace,
            side,
            r,
            "secret",
            "externalContactSecretRef",
        )
        .await?;
        provider = provider
            .with_customer_contact(&secret, &options)
            .map_err(|e| unusable(e.to_string()))?;
    }
    let crypto = match &account.callback {
        None => None,
        Some(cb) => {
            let field = format!("spec.{side}.callback.secretRef");
            let all = secrets::read_all(client, namespace, &cb.secret_ref.name, &field).await?;
            let value = |key: &str| -> Result<String, StartError> {
                let v = all
                    .get(key)
                    .ok_or_else(|| secrets::SecretError::MissingKey {
                        namespace: namespace.into(),
                        name: cb.secret_ref.name.clone(),
                        key: key.into(),
                        field: field.clone(),
                    })?;
                String::from_utf8(v.clone())
                    .map(|s| s.trim().to_string())
                    .map_err(|_| unusable(format!("{field}: key {key} is not UTF-8")))
            };
            let crypto = CallbackCrypto::new(&value("token")?, &value("encodingAESKey")?, &corp_id)
                .map_err(|e| unusable(format!("{field}: {e}")))?;
            Some(crypto)
        }
    };
    Ok(WecomSide {
        corp_id,
        crypto,
        feed: SyntheticFeed::with_baseline(provider, DEFAULT_RETENTION, Some(Box::new(baseline))),
    })
}

async fn agora_chat(
    client: &Client,
    namespace: &str,
    side: Side,
    account: &AccountRef,
    baseline: TopicBaseline,
) -> Result<Arc<SyntheticFeed<AgoraChatProvider>>, StartError> {
    let r = &account.credentials_secret_ref;
    let field = format!("spec.{side}.credentialsSecretRef");
    let all = secrets::read_all(client, namespace, &r.name, &field).await?;
    let value = |key: &str| -> Result<String, StartError> {
        let v = all
            .get(key)
            .ok_or_else(|| secrets::SecretError::MissingKey {
                namespace: namespace.into(),
                name: r.name.clone(),
                key: key.into(),
                field: field.clone(),
            })?;
        String::from_utf8(v.clone())
            .map(|s| s.trim().to_string())
            .map_err(|_| StartError::Provider {
                side,
                detail: format!("{field}: key {key} is not UTF-8"),
            })
    };
    let provider = AgoraChatProvider::new(
        account.api_base.as_deref().unwrap_or_default(),
        account.id(),
        &value("appId")?,
        &value("appCertificate")?,
        crate::provider::cgibin::Limit::Documented,
    )
    .map_err(|e| StartError::Provider {
        side,
        detail: e.to_string(),
    })?;
    Ok(SyntheticFeed::with_baseline(
        provider,
        DEFAULT_RETENTION,
        Some(Box::new(baseline)),
    ))
}

/// What was replicated last: the pair's compacted state topic, read whole.
#[derive(Clone)]
struct TopicBaseline(KafkaCopyConfig);

impl TopicBaseline {
    async fn for_pair(
        client: &Client,
        (namespace, name): (&str, &str),
        spec: &AccountPairSpec,
    ) -> Self {
        let mut cfg =
            KafkaCopyConfig::for_pair(&spec.replication.kafka.bootstrap_servers, namespace, name);
        cfg.properties = super::replication::kafka_properties(client, namespace, spec)
            .await
            .unwrap_or_default();
        TopicBaseline(cfg)
    }
}

#[async_trait::async_trait]
impl Baseline for TopicBaseline {
    async fn read(&self) -> Result<Option<BTreeMap<EntityKey, Digest>>, String> {
        crate::drills::live_state(&self.0)
            .await
            .map_err(|e| e.to_string())
    }
}
