//! How a pair names each of its two accounts: which provider adapter reaches it, its id
//! there, its credentials and, for providers that send them, its change callbacks. The
//! CEL rules say which fields belong to which provider.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::SecretKeyRef;

/// Kind of provider adapter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ProviderKind {
    /// The Provider API over HTTP/JSON (src/provider/openapi.yaml); also what the simulator serves.
    #[default]
    Http,
    /// A WeCom (企业微信) corp over WeCom's own server API: contacts, tags and
    /// customer-contact tags; changes from its callbacks and a reconciliation scan.
    Wecom,
    /// A WeChat Official Account (公众号) over its own API: the custom menu, permanent
    /// materials, follower tags; auto-replies read and compared, not replicable;
    /// changes from a reconciliation scan.
    OfficialAccount,
    /// An Agora Chat app over its REST API: users and groups with their members;
    /// changes from its post-delivery callbacks and a reconciliation scan.
    AgoraChat,
}

/// One messaging account at a provider. `provider: http` (the default) names it by
/// `endpoint` and `accountId`; `provider: wecom` by `corpId`, `provider: officialAccount`
/// by `appId` (both reached at `apiBase`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new(
    "(has(self.provider) && self.provider != 'http') || (has(self.endpoint) && has(self.accountId))"
).message("provider http needs endpoint (the Provider API's base URL) and accountId"))]
#[x_kube(validation = kube::core::Rule::new(
    "!has(self.provider) || self.provider != 'wecom' || has(self.corpId)"
).message("provider wecom needs corpId: copy it from the WeCom admin console (My Company → Corp ID)"))]
#[x_kube(validation = kube::core::Rule::new(
    "!has(self.provider) || self.provider != 'officialAccount' || has(self.appId)"
).message("provider officialAccount needs appId: copy the AppID from mp.weixin.qq.com (设置与开发 → 基本配置)"))]
#[x_kube(validation = kube::core::Rule::new(
    "!has(self.provider) || self.provider != 'agoraChat' || (has(self.appKey) && has(self.apiBase))"
).message("provider agoraChat needs appKey (ORG#APP) and apiBase (the app's REST API host, e.g. https://a41.chat.agora.io): both are on the Agora console's app page"))]
#[x_kube(validation = kube::core::Rule::new(
    "(has(self.provider) && self.provider == 'agoraChat') || !has(self.appKey)"
).message("appKey belongs to provider agoraChat: set provider: agoraChat or remove it"))]
#[x_kube(validation = kube::core::Rule::new(
    "!has(self.provider) || self.provider == 'http' || (!has(self.endpoint) && !has(self.accountId))"
).message("endpoint and accountId belong to provider http: a WeCom corp is named by corpId and an Official Account by appId, each reached at apiBase"))]
#[x_kube(validation = kube::core::Rule::new(
    "(has(self.provider) && self.provider == 'wecom') || (!has(self.corpId) && !has(self.externalContactSecretRef))"
).message("corpId and externalContactSecretRef belong to provider wecom: set provider: wecom or remove them"))]
#[x_kube(validation = kube::core::Rule::new(
    "(has(self.provider) && (self.provider == 'wecom' || self.provider == 'agoraChat')) || !has(self.callback)"
).message("callback belongs to provider wecom (its Token and EncodingAESKey) or agoraChat (its callback rule's secret): set the provider or remove it"))]
#[x_kube(validation = kube::core::Rule::new(
    "(has(self.provider) && self.provider == 'officialAccount') || !has(self.appId)"
).message("appId belongs to provider officialAccount: set provider: officialAccount or remove it"))]
#[x_kube(validation = kube::core::Rule::new(
    "(has(self.provider) && self.provider != 'http') || !has(self.apiBase)"
).message("apiBase belongs to provider wecom, officialAccount or agoraChat: provider http is reached at endpoint"))]
pub struct AccountRef {
    /// Adapter used to reach the provider.
    #[serde(default)]
    pub provider: ProviderKind,
    /// `provider: http`: base URL of the Provider API, e.g. `https://provider.example.com`.
    /// Never with credentials in it (`user:password@`): the token belongs in
    /// `credentialsSecretRef`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048), pattern(r"^https?://[^\s/]+(/[^\s]*)?$"))]
    #[x_kube(validation = kube::core::Rule::new("!self.matches('^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*@')")
        .message("the endpoint URL carries credentials (user:password@ or user@): remove them and put the token in the Secret named by credentialsSecretRef"))]
    pub endpoint: Option<String>,
    /// `provider: http`: the account's id at the provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128), pattern(r"^[A-Za-z0-9][A-Za-z0-9._:-]*$"))]
    pub account_id: Option<String>,
    /// `provider: wecom`: the corp's ID (企业ID, e.g. `ww0123456789abcdef`), from the
    /// admin console's My Company page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64), pattern(r"^[A-Za-z0-9][A-Za-z0-9_-]*$"))]
    pub corp_id: Option<String>,
    /// `provider: officialAccount`: the account's AppID (`wx` and 16 hex digits), from
    /// mp.weixin.qq.com → 设置与开发 → 基本配置.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = kube::core::Rule::new("self.matches('^wx[0-9a-f]{16}$')")
        .message("appId is an Official Account's AppID: wx followed by 16 hex digits (mp.weixin.qq.com → 设置与开发 → 基本配置)"))]
    pub app_id: Option<String>,
    /// `provider: agoraChat`: the app's App Key, `ORG#APP` (Agora console → the app →
    /// Chat → basic information).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = kube::core::Rule::new("self.matches('^[A-Za-z0-9-]+#[A-Za-z0-9_-]+$')")
        .message("appKey is an Agora Chat App Key: ORG#APP, as the console shows it"))]
    pub app_key: Option<String>,
    /// The API credentials. `provider: http`: the bearer token (key `token` unless
    /// given). `provider: wecom`: the contacts-sync (通讯录同步) Secret, with API
    /// editing enabled (key `secret` unless given). `provider: officialAccount`: the
    /// AppSecret (key `secret` unless given). `provider: agoraChat`: the app's App ID
    /// and App Certificate (keys `appId` and `appCertificate`).
    pub credentials_secret_ref: SecretKeyRef,
    /// `provider: wecom`: the customer-contact (客户联系) Secret (key `secret` unless
    /// given). Without it corp tags (`corp-tag`) are not replicated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_contact_secret_ref: Option<SecretKeyRef>,
    /// The provider's change callbacks. `provider: wecom`: the settings registered for
    /// the contacts-sync app (its 接收事件服务器: URL `…/webhooks/wecom/NAMESPACE/PAIR`,
    /// Token and EncodingAESKey). `provider: agoraChat`: the app's post-delivery callback
    /// rule (URL `…/webhooks/agora/NAMESPACE/PAIR`, its secret). Without it changes are
    /// seen only by the reconciliation scan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback: Option<CallbackSpec>,
    /// `provider: wecom` / `officialAccount` / `agoraChat`: where the API is reached:
    /// `https://qyapi.weixin.qq.com` (WeCom) or `https://api.weixin.qq.com` (Official
    /// Accounts) unless given (a forward proxy, or the simulator in tests); for Agora
    /// Chat, required: the app's REST API host from the console.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048), pattern(r"^https?://[^\s/@]+(/[^\s]*)?$"))]
    pub api_base: Option<String>,
}

impl AccountRef {
    /// The account's id at its provider: `accountId`, a WeCom corp's `corpId`, an
    /// Official Account's `appId`.
    pub fn id(&self) -> &str {
        match self.provider {
            ProviderKind::Http => self.account_id.as_deref().unwrap_or_default(),
            ProviderKind::Wecom => self.corp_id.as_deref().unwrap_or_default(),
            ProviderKind::OfficialAccount => self.app_id.as_deref().unwrap_or_default(),
            ProviderKind::AgoraChat => self.app_key.as_deref().unwrap_or_default(),
        }
    }
}

/// A provider callback's secrets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CallbackSpec {
    /// Secret (in the pair's namespace). WeCom: keys `token` (the callback Token) and
    /// `encodingAESKey` (the 43-character EncodingAESKey). Agora Chat: key `secret` (the
    /// callback rule's secret, from the console's callback rule list).
    pub secret_ref: SecretRef,
}

/// A whole Secret in the pair's namespace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}
