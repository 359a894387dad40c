//! The plugin's connection to the cluster: the current kubeconfig (or `--kubeconfig`,
//! `--context`), the namespace, who the user is, and API errors turned into exit codes.

use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use super::{Failure, Global};
use crate::api::{AccountPair, Switchover};

pub struct Kube {
    pub client: Client,
    pub namespace: String,
}

impl Kube {
    pub async fn connect(g: &Global) -> Result<Kube, Failure> {
        let opts = KubeConfigOptions {
            context: g.context.clone(),
            ..Default::default()
        };
        let config = match &g.kubeconfig {
            Some(path) => {
                let kc = Kubeconfig::read_from(path).map_err(|e| {
                    Failure::usage(format!(
                        "cannot read the kubeconfig {}: {e}",
                        path.display()
                    ))
                })?;
                Config::from_custom_kubeconfig(kc, &opts).await
            }
            None => Config::from_kubeconfig(&opts).await,
        }
        .map_err(|e| {
            Failure::usage(format!(
                "cannot use the kubeconfig ($KUBECONFIG, ~/.kube/config or --kubeconfig): {e}"
            ))
        })?;
        let namespace = g
            .namespace
            .clone()
            .unwrap_or_else(|| config.default_namespace.clone());
        let client = Client::try_from(config)
            .map_err(|e| Failure::failed(format!("cannot build a Kubernetes client: {e}")))?;
        Ok(Kube { client, namespace })
    }

    pub fn pairs(&self) -> Api<AccountPair> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    pub fn switchovers(&self) -> Api<Switchover> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// The pair, or exit 3 naming it and the namespace.
    pub async fn pair(&self, name: &str) -> Result<AccountPair, Failure> {
        match self.pairs().get_opt(name).await {
            Ok(Some(p)) => Ok(p),
            Ok(None) => Err(Failure::not_found(format!(
                "AccountPair {name:?} not found in namespace {:?} (list them with: kubectl understudy status -n {})",
                self.namespace, self.namespace
            ))),
            Err(e) => Err(api_failure(e, &format!("reading AccountPair {name:?}"))),
        }
    }

    /// The user name as the API server sees it (SelfSubjectReview), else $USER.
    pub async fn whoami(&self) -> String {
        let api: Api<SelfSubjectReview> = Api::all(self.client.clone());
        let review = SelfSubjectReview::default();
        if let Ok(r) = api.create(&PostParams::default(), &review).await
            && let Some(name) = r.status.and_then(|s| s.user_info).and_then(|u| u.username)
            && !name.is_empty()
        {
            return name;
        }
        std::env::var("USER")
            .or_else(|_| std::env::var("USERNAME"))
            .unwrap_or_else(|_| "unknown".into())
    }
}

/// An API error as a failure with the exit code scripts expect.
pub fn api_failure(e: kube::Error, what: &str) -> Failure {
    match &e {
        kube::Error::Api(s) => match s.code {
            404 => Failure::not_found(format!("{what}: not found ({})", s.message)),
            409 => Failure::conflict(format!("{what}: conflict ({})", s.message)),
            403 => Failure::failed(format!(
                "{what}: forbidden — your user may not do this ({}); ask for the understudy-oncall role",
                s.message
            )),
            400 | 422 => Failure::usage(format!("{what}: rejected ({})", s.message)),
            _ => Failure::failed(format!("{what}: {}", s.message)),
        },
        _ => Failure::failed(format!("{what}: {e}")),
    }
}
