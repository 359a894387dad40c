//! What the WeCom e2e tests share: wechatpy's scenarios and crypto run in the test bed's
//! virtualenv, simulated corps configured through the simulator's admin API, and calls
//! on a corp's `/cgi-bin` API as any WeCom client makes them.

#![allow(dead_code)]

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::{Value, json};

use crate::harness::{Proc, admin};
use crate::support::Testbed;

/// Runs a scenario of `tests/e2e/wecom/wechatpy_client.py` against the simulator.
pub fn wechatpy(sim: &Proc, scenario: &str, corp: &str, secret: &str) -> Value {
    let python = Testbed::load().var("TESTBED_WECHATPY_PYTHON");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/e2e/wecom/wechatpy_client.py"
    );
    let out = Command::new(&python)
        .args([script, &sim.url, scenario, corp, secret])
        .output()
        .unwrap_or_else(|e| panic!("run {python}: {e}"));
    assert!(
        out.status.success(),
        "wechatpy {scenario} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the scenario printed JSON")
}

/// Runs `tests/e2e/wecom/wechatpy_crypto.py` (`op` on `items`) with this Token,
/// EncodingAESKey and corp.
pub fn wechatpy_crypto(op: &str, token: &str, key: &str, corp: &str, items: Value) -> Vec<Value> {
    let python = Testbed::load().var("TESTBED_WECHATPY_PYTHON");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/e2e/wecom/wechatpy_crypto.py"
    );
    let mut child = Command::new(&python)
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {python}: {e}"));
    let request = json!({ "op": op, "token": token, "key": key, "corp": corp, "items": items });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(request.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "wechatpy failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("wechatpy printed JSON");
    v["items"].as_array().unwrap().clone()
}

/// `PUT /admin/wecom/corps/{corp}`.
pub async fn configure(sim: &Proc, corp: &str, config: Value) {
    admin(
        sim,
        &format!("/admin/wecom/corps/{corp}"),
        reqwest::Method::PUT,
        config,
    )
    .await;
}

/// `GET /admin/wecom/corps/{corp}`: tokens issued, rate-limited calls, callbacks.
pub async fn corp_stats(sim: &Proc, corp: &str) -> Value {
    admin(
        sim,
        &format!("/admin/wecom/corps/{corp}"),
        reqwest::Method::GET,
        json!(null),
    )
    .await
}

/// One corp's `/cgi-bin` API, as a WeCom client calls it.
pub struct Corp {
    pub base: String,
    pub id: String,
    pub secret: String,
}

impl Corp {
    pub fn new(sim: &Proc, id: &str, secret: &str) -> Corp {
        Corp {
            base: sim.url.clone(),
            id: id.into(),
            secret: secret.into(),
        }
    }

    async fn token(&self) -> String {
        let v: Value = reqwest::get(format!(
            "{}/cgi-bin/gettoken?corpid={}&corpsecret={}",
            self.base, self.id, self.secret
        ))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        assert_eq!(v["errcode"], 0, "gettoken {}: {v}", self.id);
        v["access_token"].as_str().unwrap().to_string()
    }

    /// The whole answer of `api` (a POST with `body`, or a GET with `query`).
    pub async fn answer(&self, api: &str, query: &[(&str, &str)], body: Option<Value>) -> Value {
        let token = self.token().await;
        let url = format!("{}/cgi-bin/{api}", self.base);
        let client = reqwest::Client::new();
        let mut q: Vec<(&str, &str)> = vec![("access_token", &token)];
        q.extend_from_slice(query);
        let req = match body {
            Some(b) => client.post(url).query(&q).json(&b),
            None => client.get(url).query(&q),
        };
        req.send().await.unwrap().json().await.unwrap()
    }

    /// `api`'s answer, which must be errcode 0.
    pub async fn call(&self, api: &str, query: &[(&str, &str)], body: Option<Value>) -> Value {
        let v = self.answer(api, query, body).await;
        assert_eq!(v["errcode"], 0, "{api} on {}: {v}", self.id);
        v
    }
}

/// key → digest of a corp's entities, as `WecomProvider` reads them over WeCom's API
/// (what a drill compares; the simulator's own store also keeps WeCom's server-assigned
/// ids, so its digests of corp tags differ between corps).
pub async fn adapter_digests(
    sim: &Proc,
    corp: &str,
    contacts_secret: &str,
    customer_secret: &str,
) -> std::collections::BTreeMap<String, String> {
    use understudy::provider::AccountProvider;
    use understudy::provider::cgibin::client::ClientOptions;
    use understudy::provider::wecom::provider::WecomProvider;
    let options = ClientOptions {
        api_base: Some(sim.url.clone()),
        ..ClientOptions::default()
    };
    let p = WecomProvider::new(corp, contacts_secret, &options)
        .and_then(|p| p.with_customer_contact(customer_secret, &options))
        .unwrap();
    let mut out = std::collections::BTreeMap::new();
    let mut after = None;
    loop {
        let page = p.list_digests(after.as_ref(), 1000).await.unwrap();
        out.extend(page.items.iter().map(|(k, d)| (k.to_string(), d.to_hex())));
        match page.next {
            Some(k) => after = Some(k),
            None => return out,
        }
    }
}

/// The keys the simulator holds for a corp (read without WeCom's API, which a rate-limit
/// storm refuses).
pub async fn stored_keys(sim: &Proc, corp: &str) -> Vec<String> {
    crate::harness::read_all(sim, corp)
        .await
        .into_iter()
        .map(|(k, _)| k)
        .collect()
}

/// One entity's digest as the simulator holds it.
pub async fn stored_digest(sim: &Proc, corp: &str, key: &str) -> Option<String> {
    crate::harness::read_all(sim, corp)
        .await
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, d)| d)
}

/// The `p` quantile of sorted durations.
pub fn percentile(sorted: &[std::time::Duration], p: f64) -> std::time::Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}
