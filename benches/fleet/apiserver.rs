//! The API server's request counters: `apiserver_request_total` of the test bed's
//! kube-apiserver `/metrics`, read with the bench's client (the test bed kubeconfig's
//! admin client certificate) and summed by verb and resource, and the growth between two
//! such reads.

use std::collections::HashMap;

use kube::Client;

/// `apiserver_request_total` of the API server, summed by "VERB resource[/subresource]".
pub async fn apiserver_counts(client: &Client) -> Option<HashMap<String, f64>> {
    let req = axum::http::Request::get("/metrics").body(Vec::new()).ok()?;
    let text = client.request_text(req).await.ok()?;
    let mut out = HashMap::new();
    for line in text.lines() {
        let Some((labels, value)) = line
            .strip_prefix("apiserver_request_total{")
            .and_then(|l| l.rsplit_once("} "))
        else {
            continue;
        };
        let Ok(value) = value.trim().parse::<f64>() else {
            continue;
        };
        let label = |k: &str| {
            labels
                .split("\",")
                .find_map(|kv| kv.strip_prefix(k)?.strip_prefix("=\""))
                .map(|v| v.trim_end_matches('"').to_string())
                .unwrap_or_default()
        };
        let (resource, sub) = (label("resource"), label("subresource"));
        let what = match (resource.is_empty(), sub.is_empty()) {
            (true, _) => sub,
            (false, true) => resource,
            (false, false) => format!("{resource}/{sub}"),
        };
        *out.entry(format!("{} {what}", label("verb")))
            .or_insert(0.0) += value;
    }
    Some(out)
}

pub fn total_delta(a: &HashMap<String, f64>, b: &HashMap<String, f64>) -> f64 {
    b.iter()
        .map(|(k, v)| (v - a.get(k).copied().unwrap_or(0.0)).max(0.0))
        .sum()
}
