//! The pairs' `spec.notifications`, kept current by a watch of the AccountPairs: which
//! of the operator's sinks each pair uses, and its own sinks (their Secrets read in the
//! pair's namespace, again on every refresh round).
//!
//! A pair's own sink that cannot be used (its Secret or key missing, a URL refused) is
//! left out and kept as a problem for the pair's condition until a later read works; a
//! name in `operatorSinks` that the operator does not have is logged.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures::StreamExt;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};

use super::{Notifications, key, lock, resolve};
use crate::api::AccountPair;
use crate::notify::{Failure, Notifier, PairNotifications, ResolvedSink, unknown_operator_sinks};

/// One pair's notification routing.
#[derive(Default)]
pub(super) struct PairEntry {
    /// `spec.notifications` (none: every operator sink).
    pub spec: Option<PairNotifications>,
    /// The pair's own sinks that could be used.
    pub notifier: Option<Notifier>,
    /// The pair's own sinks that cannot be used, and why.
    pub problems: Vec<Failure>,
}

/// A pair's own sinks resolved: those usable, and a problem for each of the others.
struct Resolved {
    sinks: Vec<ResolvedSink>,
    problems: Vec<Failure>,
}

async fn resolve_own(client: &Client, namespace: &str, spec: &PairNotifications) -> Resolved {
    let mut out = Resolved {
        sinks: Vec::new(),
        problems: Vec::new(),
    };
    for sink in &spec.sinks {
        let field = format!("spec.notifications.sinks[{:?}].secretRef", sink.name);
        match resolve(client, namespace, sink, &field).await {
            Ok(r) => out.sinks.push(r),
            Err(e) => out.problems.push(Failure {
                sink: sink.name.clone(),
                kind: sink.kind,
                category: "config",
                detail: e.to_string(),
                attempts: 0,
                incident_key: String::new(),
                at: Utc::now(),
            }),
        }
    }
    out
}

impl Notifications {
    /// Follows the pairs' `spec.notifications` for ever.
    pub(super) async fn watch_pairs(self: Arc<Self>, client: Client, api: Api<AccountPair>) {
        let mut stream = watcher(api, watcher::Config::default())
            .default_backoff()
            .boxed();
        let mut listed: HashSet<String> = HashSet::new();
        while let Some(event) = stream.next().await {
            match event {
                Ok(watcher::Event::Init) => listed.clear(),
                Ok(watcher::Event::InitApply(p)) => {
                    listed.insert(pair_key(&p));
                    self.observe(&client, &p).await;
                }
                Ok(watcher::Event::InitDone) => {
                    let gone: Vec<String> = lock(&self.pairs)
                        .keys()
                        .filter(|k| !listed.contains(*k))
                        .cloned()
                        .collect();
                    for k in gone {
                        self.forget(&k);
                    }
                }
                Ok(watcher::Event::Apply(p)) => self.observe(&client, &p).await,
                Ok(watcher::Event::Delete(p)) => self.forget(&pair_key(&p)),
                Err(e) => {
                    tracing::warn!(error = %e, "watching the pairs' notification settings");
                }
            }
        }
    }

    /// Takes a pair's `spec.notifications` when it changed.
    async fn observe(&self, client: &Client, pair: &AccountPair) {
        let k = pair_key(pair);
        let spec = pair.spec.notifications.clone();
        let same = lock(&self.pairs).get(&k).is_some_and(|e| e.spec == spec);
        if same {
            return;
        }
        if let Some(s) = &spec {
            let unknown = unknown_operator_sinks(&self.config.sinks, s);
            if !unknown.is_empty() {
                let known: Vec<&str> = self.config.sinks.iter().map(|s| s.name.as_str()).collect();
                tracing::warn!(pair = %k, ?unknown, ?known, "spec.notifications.operatorSinks names sinks the operator does not have: no message goes to them");
            }
        }
        let resolved = match &spec {
            Some(s) if !s.sinks.is_empty() => {
                Some(resolve_own(client, &pair.namespace().unwrap_or_default(), s).await)
            }
            _ => None,
        };
        self.install(&k, spec, resolved);
    }

    /// Puts a pair's routing in place; the replaced sinks finish what they hold.
    fn install(&self, k: &str, spec: Option<PairNotifications>, resolved: Option<Resolved>) {
        let (sinks, problems) =
            resolved.map_or((Vec::new(), Vec::new()), |r| (r.sinks, r.problems));
        for p in &problems {
            tracing::warn!(pair = %k, sink = %p.sink, problem = %p.detail, "the pair's notification sink cannot be used");
        }
        let entry = PairEntry {
            spec,
            notifier: (!sinks.is_empty()).then(|| Self::notifier(sinks, &self.retry)),
            problems,
        };
        let old = lock(&self.pairs).insert(k.to_string(), entry);
        self.retire(k, old);
    }

    /// Drops a deleted pair's routing.
    fn forget(&self, k: &str) {
        let old = lock(&self.pairs).remove(k);
        self.retire(k, old);
        lock(&self.overdue).forget(k);
    }

    fn retire(&self, k: &str, old: Option<PairEntry>) {
        if let Some(notifier) = old.and_then(|e| e.notifier) {
            self.export();
            self.unexport(k, &notifier);
            tokio::spawn(notifier.shutdown(Duration::from_secs(30)));
        }
    }

    /// Reads the pairs' own sinks' Secrets again: changed credentials are swapped in
    /// (queues and counters stay); a sink that became usable or unusable restarts the
    /// pair's sinks.
    pub(super) async fn refresh_pairs(&self, client: &Client) {
        let with_sinks: Vec<(String, PairNotifications)> = lock(&self.pairs)
            .iter()
            .filter_map(|(k, e)| {
                e.spec
                    .clone()
                    .filter(|s| !s.sinks.is_empty())
                    .map(|s| (k.clone(), s))
            })
            .collect();
        for (k, spec) in with_sinks {
            let namespace = k.split('/').next().unwrap_or_default().to_string();
            let resolved = resolve_own(client, &namespace, &spec).await;
            let swap_all = {
                let pairs = lock(&self.pairs);
                let Some(entry) = pairs.get(&k).filter(|e| e.spec.as_ref() == Some(&spec)) else {
                    continue; // changed or gone meanwhile: the watch has it
                };
                let now: Vec<&str> = resolved.sinks.iter().map(|s| s.name.as_str()).collect();
                let before = entry
                    .notifier
                    .as_ref()
                    .map(Notifier::sink_names)
                    .unwrap_or_default();
                if now == before {
                    for r in &resolved.sinks {
                        if let Some(n) = &entry.notifier
                            && n.replace(r.clone())
                        {
                            tracing::info!(pair = %k, sink = %r.name, "notification sink credentials changed: the new ones are used from the next message");
                        }
                    }
                    false
                } else {
                    true
                }
            };
            if swap_all {
                self.install(&k, Some(spec), Some(resolved));
            }
        }
    }
}

fn pair_key(p: &AccountPair) -> String {
    key(&p.namespace().unwrap_or_default(), &p.name_any())
}
