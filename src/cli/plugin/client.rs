//! The plugin's connection to the cluster: the current kubeconfig (or `--kubeconfig`,
//! `--context`), impersonation (`--as`, `--as-group`), the per-request timeout
//! (`--request-timeout`), the namespace, who the user is, and API errors turned into
//! exit codes.

use std::time::Duration;

use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use super::{Failure, Global};
use crate::api::{AccountPair, Drill, Switchover};

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
        let config = with_flags(config, g)?;
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

    /// Every Switchover of the namespace.
    pub async fn list_switchovers(&self) -> Result<Vec<Switchover>, Failure> {
        self.switchovers()
            .list(&Default::default())
            .await
            .map(|l| l.items)
            .map_err(|e| api_failure(e, "listing Switchovers"))
    }

    /// Every Drill of the namespace.
    pub async fn list_drills(&self) -> Result<Vec<Drill>, Failure> {
        Api::<Drill>::namespaced(self.client.clone(), &self.namespace)
            .list(&Default::default())
            .await
            .map(|l| l.items)
            .map_err(|e| api_failure(e, "listing Drills"))
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

/// `--request-timeout`: how long one API request may take. `0` (the default, as in
/// kubectl) means no limit; a bare number is seconds; else a duration like `30s`, `1m`,
/// `1m30s`, `500ms`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RequestTimeout(pub Option<Duration>);

/// Pure: parse a `--request-timeout` value.
pub fn parse_request_timeout(s: &str) -> Result<RequestTimeout, String> {
    let t = s.trim();
    let number = t.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    if !number.is_empty() && number.chars().all(|c| c == '0') {
        // 0, 0s, 0m: no limit (when the unit is one we know).
        return crate::audit::parse_duration(&format!("1{}", &t[number.len()..]))
            .or_else(|| (number.len() == t.len()).then_some(Duration::ZERO))
            .map(|_| RequestTimeout(None))
            .ok_or_else(|| format!("{s:?} is not a duration like 30s, 1m or 0 (no limit)"));
    }
    let d = if !t.is_empty() && t.chars().all(|c| c.is_ascii_digit()) {
        t.parse::<u64>().ok().map(Duration::from_secs)
    } else {
        crate::audit::parse_duration(t)
    };
    match d {
        Some(d) if d.is_zero() => Ok(RequestTimeout(None)),
        Some(d) => Ok(RequestTimeout(Some(d))),
        None => Err(format!(
            "{s:?} is not a duration like 30s, 1m or 0 (no limit)"
        )),
    }
}

/// Pure: the kubeconfig's settings with the global flags applied: `--as`/`--as-group`
/// replace the kubeconfig's impersonation; `--request-timeout` bounds connecting,
/// sending and each response.
pub fn with_flags(mut config: Config, g: &Global) -> Result<Config, Failure> {
    if !g.as_group.is_empty() && g.as_user.is_none() {
        return Err(Failure::usage(
            "--as-group needs --as (the API server impersonates groups only together with a user)",
        ));
    }
    if let Some(user) = &g.as_user {
        if user.trim().is_empty() {
            return Err(Failure::usage("--as needs a user name"));
        }
        config.auth_info.impersonate = Some(user.clone());
        config.auth_info.impersonate_groups = (!g.as_group.is_empty()).then(|| g.as_group.clone());
    }
    if let RequestTimeout(Some(d)) = g.request_timeout {
        config.connect_timeout = Some(d);
        config.write_timeout = Some(d);
        config.read_timeout = Some(d);
        // Count from the request, not from when a pooled connection went idle.
        config.reset_reader_on_write = true;
    }
    Ok(config)
}

/// Pure: an API error in one line (the server's code and message, not the whole Status).
pub fn brief(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("{} {}: {}", s.code, s.reason, s.message),
        other => other.to_string(),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn global() -> Global {
        Global {
            kubeconfig: None,
            context: None,
            namespace: None,
            as_user: None,
            as_group: Vec::new(),
            request_timeout: RequestTimeout::default(),
        }
    }

    fn config() -> Config {
        Config::new("https://127.0.0.1:6443".parse().unwrap())
    }

    #[test]
    fn request_timeout_takes_kubectl_values() {
        let ok = |s: &str| parse_request_timeout(s).unwrap().0;
        assert_eq!(ok("0"), None, "0 means no limit");
        assert_eq!(ok("0s"), None);
        assert_eq!(ok("30"), Some(Duration::from_secs(30)), "bare seconds");
        assert_eq!(ok("30s"), Some(Duration::from_secs(30)));
        assert_eq!(ok("1m"), Some(Duration::from_secs(60)));
        assert_eq!(ok("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(ok("500ms"), Some(Duration::from_millis(500)));
        for bad in ["", "abc", "-1s", "10x", "1.5s"] {
            let e = parse_request_timeout(bad).unwrap_err();
            assert!(e.contains("not a duration"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn impersonation_and_timeout_reach_the_client_config() {
        let mut g = global();
        g.as_user = Some("alice".into());
        g.as_group = vec!["sre".into(), "oncall".into()];
        g.request_timeout = parse_request_timeout("20s").unwrap();
        let c = with_flags(config(), &g).unwrap();
        assert_eq!(c.auth_info.impersonate.as_deref(), Some("alice"));
        assert_eq!(
            c.auth_info.impersonate_groups,
            Some(vec!["sre".to_string(), "oncall".to_string()])
        );
        assert_eq!(c.read_timeout, Some(Duration::from_secs(20)));
        assert_eq!(c.connect_timeout, Some(Duration::from_secs(20)));
        assert!(c.reset_reader_on_write);

        let plain = with_flags(config(), &global()).unwrap();
        assert_eq!(plain.auth_info.impersonate, None);
        assert_eq!(plain.read_timeout, None, "no --request-timeout: no limit");
    }

    #[test]
    fn api_errors_are_told_in_one_line() {
        let e = kube::Error::Api(Box::new(
            kube::core::Status::failure("pods \"x\" not found", "NotFound").with_code(404),
        ));
        assert_eq!(brief(&e), "404 NotFound: pods \"x\" not found");
    }

    #[test]
    fn a_group_without_a_user_is_refused() {
        let mut g = global();
        g.as_group = vec!["system:masters".into()];
        let f = with_flags(config(), &g).unwrap_err();
        assert_eq!(f.code, crate::cli::exit::USAGE);
        assert!(f.message.contains("--as-group needs --as"), "{}", f.message);
    }
}
