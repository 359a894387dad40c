//! Shared helpers of the end-to-end tests: the test bed's env file, a Kubernetes client
//! on its API server, fresh namespaces, CRD installation and condition waits.
//!
//! The env file is written by `tests/testbed/up.sh` (`make testbed`); its path is
//! `$UNDERSTUDY_TESTBED_ENV`, or `target/testbed/env` under the repository.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

pub mod private_kafka;

/// The running test bed, as its env file describes it.
pub struct Testbed {
    vars: HashMap<String, String>,
}

impl Testbed {
    /// Load the env file; panics with what to run when the test bed is not up.
    pub fn load() -> Self {
        Self::read().unwrap_or_else(|(path, e)| {
            panic!("cannot read the test bed env file {}: {e}. Start the test bed with `make testbed` (end-to-end tests run against the real components).", path.display())
        })
    }

    /// The env file if there is one (for tests that only take hints from it).
    pub fn try_load() -> Option<Self> {
        Self::read().ok()
    }

    fn read() -> Result<Self, (PathBuf, std::io::Error)> {
        let path = std::env::var("UNDERSTUDY_TESTBED_ENV")
            .map(PathBuf::from)
            .unwrap_or_else(|_| {
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/testbed/env")
            });
        let text = std::fs::read_to_string(&path).map_err(|e| (path, e))?;
        let vars = text
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        Ok(Testbed { vars })
    }

    /// A variable of the env file, if set.
    pub fn get(&self, key: &str) -> Option<String> {
        self.vars.get(key).cloned()
    }

    /// A variable of the env file; panics naming it when missing.
    pub fn var(&self, key: &str) -> String {
        self.vars.get(key).cloned().unwrap_or_else(|| {
            panic!("the test bed env file has no {key}; is that component up? (`make testbed`)")
        })
    }

    /// Kubernetes client with the test bed's admin kubeconfig.
    pub async fn kube(&self) -> Client {
        let kubeconfig = Kubeconfig::read_from(self.var("TESTBED_KUBECONFIG"))
            .expect("read the test bed kubeconfig");
        let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .expect("kubeconfig is usable");
        Client::try_from(config).expect("kube client")
    }
}

/// A random lower-case suffix for names that must not collide across runs.
pub fn suffix() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..6)
        .map(|_| rng.random_range(b'a'..=b'z') as char)
        .collect()
}

/// The label that names the test process that made a namespace.
const PID_LABEL: &str = "understudy-e2e/pid";
/// Set once the Kafka topics of a namespace whose process ended are deleted.
const SWEPT_LABEL: &str = "understudy-e2e/topics-deleted";

/// Create a fresh namespace (the test bed has no controller-manager, so namespaces are
/// never deleted: each test takes its own). The first call of a test process deletes the
/// Kafka topics of the namespaces made by test processes that have ended (see
/// [`sweep_topics`]).
pub async fn fresh_namespace(client: &Client, prefix: &str) -> String {
    static SWEPT: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    SWEPT.get_or_init(|| sweep_topics(client)).await;
    let name = format!("{prefix}-{}", suffix());
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            labels: Some(
                [(PID_LABEL.to_string(), std::process::id().to_string())]
                    .into_iter()
                    .collect(),
            ),
            ..Default::default()
        },
        ..Default::default()
    };
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("create namespace");
    name
}

/// Delete the pairs' Kafka topics (`understudy.<namespace>.*`) of the namespaces made by
/// test processes no longer running, and mark those namespaces done. Every suite leaves
/// its topics behind, and a test bed reused for many runs grew a broker that ran out of
/// heap; a process still running (a suite run beside this one) keeps its topics.
pub async fn sweep_topics(client: &Client) {
    let Some(bootstrap) = Testbed::try_load().and_then(|tb| tb.get("TESTBED_KAFKA_BOOTSTRAP"))
    else {
        return;
    };
    let api = Api::<Namespace>::all(client.clone());
    let Ok(list) = api
        .list(&kube::api::ListParams::default().labels(&format!("{PID_LABEL},!{SWEPT_LABEL}")))
        .await
    else {
        return;
    };
    let ended: Vec<String> = list
        .items
        .iter()
        .filter(|ns| {
            let pid = ns.metadata.labels.as_ref().and_then(|l| l.get(PID_LABEL));
            pid.is_some_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists())
        })
        .filter_map(|ns| ns.metadata.name.clone())
        .collect();
    if ended.is_empty() {
        return;
    }
    let Ok(admin) = understudy::replication::topics::admin_client(&bootstrap, &HashMap::new())
    else {
        return;
    };
    let prefixes: Vec<String> = ended.iter().map(|ns| format!("understudy.{ns}.")).collect();
    let Ok(deleted) = understudy::replication::topics::delete_topics_with_prefixes(
        std::sync::Arc::new(admin),
        prefixes,
        Duration::from_secs(30),
    )
    .await
    else {
        return; // the next process tries again
    };
    let mark = serde_json::json!({"metadata": {"labels": {SWEPT_LABEL: "true"}}});
    for ns in &ended {
        let _ = api
            .patch(ns, &PatchParams::default(), &Patch::Merge(&mark))
            .await;
    }
    eprintln!(
        "deleted {} Kafka topics of {} namespaces left by ended test processes",
        deleted,
        ended.len()
    );
}

/// Apply understudy's CRDs with server-side apply and wait until each is Established.
pub async fn install_crds(client: &Client) {
    let api = Api::<CustomResourceDefinition>::all(client.clone());
    let pp = PatchParams::apply("understudy-e2e").force();
    for crd in understudy::api::crds() {
        let name = crd.metadata.name.clone().expect("crd name");
        api.patch(&name, &pp, &Patch::Apply(&crd))
            .await
            .expect("apply CRD");
        wait_until(
            Duration::from_secs(30),
            &format!("CRD {name} Established"),
            || {
                let api = api.clone();
                let name = name.clone();
                async move {
                    let crd = api.get(&name).await.ok()?;
                    let established = crd
                        .status?
                        .conditions?
                        .iter()
                        .any(|c| c.type_ == "Established" && c.status == "True");
                    established.then_some(())
                }
            },
        )
        .await;
    }
}

/// Poll `check` every 50 ms until it returns `Some`, or panic after `timeout`.
pub async fn wait_until<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    wait_until_said(timeout, what, || {
        let f = check();
        async move { f.await.ok_or_else(String::new) }
    })
    .await
}

/// [`wait_until`] with a `check` that says what it saw when not done yet (`Err`): the
/// panic after `timeout` carries the last such answer.
pub async fn wait_until_said<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let start = Instant::now();
    loop {
        let seen = match check().await {
            Ok(v) => return v,
            Err(seen) => seen,
        };
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}{}{seen}",
            if seen.is_empty() { "" } else { ": " }
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl Testbed {
    /// Kubernetes client on the test bed's API server that authenticates with a bearer
    /// `token` instead of the admin certificate (e.g. a ServiceAccount token from
    /// [`service_account_token`]), to prove what that identity may and may not do.
    pub async fn kube_with_token(&self, token: &str) -> Client {
        let kubeconfig = Kubeconfig::read_from(self.var("TESTBED_KUBECONFIG"))
            .expect("read the test bed kubeconfig");
        let mut config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .expect("kubeconfig is usable");
        // Drop the admin client certificate: the token is the only credential.
        config.auth_info = serde_json::from_value(serde_json::json!({ "token": token }))
            .expect("an AuthInfo with a bearer token");
        Client::try_from(config).expect("kube client with a bearer token")
    }
}

/// A bearer token of ServiceAccount `namespace/name`, from the TokenRequest API (valid for
/// one hour). Needs the ServiceAccount to exist.
pub async fn service_account_token(client: &Client, namespace: &str, name: &str) -> String {
    use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
    use k8s_openapi::api::core::v1::ServiceAccount;
    let request = TokenRequest {
        spec: TokenRequestSpec {
            expiration_seconds: Some(3600),
            ..Default::default()
        },
        ..Default::default()
    };
    let answer = Api::<ServiceAccount>::namespaced(client.clone(), namespace)
        .create_token_request(name, &PostParams::default(), &request)
        .await
        .unwrap_or_else(|e| panic!("TokenRequest for ServiceAccount {namespace}/{name}: {e}"));
    answer
        .status
        .map(|s| s.token)
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| panic!("TokenRequest for {namespace}/{name} returned no token"))
}

/// The HTTP status of a failed API call (`None` when the call succeeded or did not reach
/// the API server).
pub fn api_error_code<T>(result: &Result<T, kube::Error>) -> Option<u16> {
    match result {
        Err(kube::Error::Api(status)) => Some(status.code),
        _ => None,
    }
}

impl Testbed {
    /// Write a kubeconfig for the test bed's API server that authenticates with a bearer
    /// `token` (and nothing else) to `target/testbed/<name>.kubeconfig`; returns its path.
    /// For running the operator as a process with a ServiceAccount's rights.
    pub fn write_token_kubeconfig(&self, token: &str, name: &str) -> PathBuf {
        let text = std::fs::read_to_string(self.var("TESTBED_KUBECONFIG"))
            .expect("read the test bed kubeconfig");
        let mut config: serde_yaml::Value =
            serde_yaml::from_str(&text).expect("the test bed kubeconfig is YAML");
        let users = config["users"]
            .as_sequence_mut()
            .expect("the kubeconfig has users");
        for user in users.iter_mut() {
            user["user"] =
                serde_yaml::to_value(serde_json::json!({ "token": token })).expect("token user");
        }
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("target/testbed")
            .join(format!("{name}.kubeconfig"));
        let body = serde_yaml::to_string(&config).expect("serialise kubeconfig");
        std::fs::write(&path, body).expect("write kubeconfig");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).ok();
        path
    }
}
