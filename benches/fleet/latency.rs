//! The notice → verified runs: at rest or under the load, a measured pair each run (created
//! with the fleet) has its primary frozen in the simulator and a signed provider notice
//! posted to the operator's webhook, and the time until both its DNS answer on BIND and a
//! request through HAProxy are on the standby is taken, as is the time until the webhook
//! answered; a Switchover that fails ends a run, a pair that is not ready in time ends
//! the runs.

use std::time::{Duration, Instant};

use kube::api::{Api, ListParams};
use serde_json::json;
use understudy::api::switchover::SwitchoverPhase;
use understudy::api::{AccountPair, Switchover};

use super::load::Writer;
use super::sample::Probe;
use super::setup::{Measured, condition};
use super::testbed::{self, Env, Proc};
use super::{NOTICE_SECRET, RUN_DEADLINE, STANDBY_IP};

pub struct LatencyCtx<'a> {
    pub tb: &'a Env,
    pub sim: &'a Proc,
    pub op: &'a Proc,
    pub pairs: &'a Api<AccountPair>,
    pub switchovers: &'a Api<Switchover>,
    pub ns: &'a str,
    pub uniq: &'a str,
    pub haproxy: &'a understudy::traffic::haproxy::HaproxyRuntime,
    /// The load, when the runs are made under it (the measured pair gets its share).
    pub writer: Option<&'a Writer>,
    pub probe: &'a Probe,
}

/// What the latency runs measured.
#[derive(Default)]
pub struct Latency {
    /// Notice sent → DNS and LB verified on the standby.
    pub verified_ms: Vec<f64>,
    /// Notice sent → the webhook answered.
    pub answered_ms: Vec<f64>,
    /// Where each verified run's time went ([`breakdown`]).
    pub breakdowns: Vec<serde_json::Value>,
    pub failures: Vec<String>,
}

/// Notice → DNS and LB verified on the standby, `runs` times numbered from `first`, on
/// the measured pairs created with the fleet (one each; its DNS record on the primary).
pub async fn latency_runs(c: &LatencyCtx<'_>, first: usize, runs: usize) -> Latency {
    let http = reqwest::Client::new();
    let (backend, hp, hs) = (
        c.tb.var("TESTBED_HAPROXY_BACKEND"),
        c.tb.var("TESTBED_HAPROXY_PRIMARY_SERVER"),
        c.tb.var("TESTBED_HAPROXY_STANDBY_SERVER"),
    );
    let frontend = c.tb.var("TESTBED_HAPROXY_FRONTEND_URL");
    let mut out = Latency::default();
    for r in first..first + runs {
        if !c.probe.operator_alive() {
            out.failures.push(format!("run {r}: the operator is gone"));
            break;
        }
        let m = Measured::new(c.uniq, r);
        let record = testbed::dns_record(c.tb, &m.record);
        if let Some(w) = c.writer {
            w.set_last(&m.primary);
        }
        // Ready: replicating, and both sides seen healthy.
        let ready_by = Instant::now() + RUN_DEADLINE;
        let ready = loop {
            if let Ok(p) = c.pairs.get(&m.name).await
                && condition(&p, "Replicating")
                && condition(&p, "PrimaryHealthy")
                && condition(&p, "StandbyHealthy")
            {
                break true;
            }
            if Instant::now() >= ready_by {
                break false;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        if !ready {
            // The operator cannot start a pair in that time: the next runs would only
            // wait as long again.
            out.failures.push(format!(
                "run {r}: {} not ready within {} s; no more runs",
                m.name,
                RUN_DEADLINE.as_secs()
            ));
            break;
        }
        if let Err(e) = c.haproxy.ensure_active(&backend, &hp, &hs).await {
            out.failures.push(format!("run {r}: HAProxy reset: {e}"));
        }
        // A frozen account takes no more changes.
        if let Some(w) = c.writer {
            w.set_last("");
        }
        // As the simulator's notice sender does (POST /admin/accounts/ID/notice with
        // applyStatus), but posted from here, so that the webhook's answer is waited for
        // as long as it takes (the simulator gives up after 5 s) and timed.
        let t0 = Instant::now();
        let notice_at = chrono::Utc::now();
        let _ = http
            .post(format!("{}/admin/accounts/{}/status", c.sim.1, m.primary))
            .json(&json!({ "status": "frozen", "reason": "bench" }))
            .send()
            .await;
        let answer = tokio::spawn(post_notice(
            http.clone(),
            format!("{}/webhooks/notices/{}/{}", c.op.1, c.ns, m.name),
            m.primary.clone(),
            format!("fleet-{}-{r}", c.uniq),
            t0,
        ));
        let mut next_check = Instant::now();
        let outcome = loop {
            if testbed::on_standby(&record, STANDBY_IP, &http, &frontend).await {
                break Ok(());
            }
            if t0.elapsed() >= RUN_DEADLINE {
                break Err(format!("not verified within {} s", RUN_DEADLINE.as_secs()));
            }
            // A switchover that failed will not move the traffic: stop waiting.
            if Instant::now() >= next_check {
                next_check = Instant::now() + Duration::from_secs(1);
                if let Some(why) = failed_switchover(c.switchovers, &m.name).await {
                    break Err(why);
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        let ms = t0.elapsed().as_secs_f64() * 1000.0;
        let left = RUN_DEADLINE.saturating_sub(t0.elapsed()) + Duration::from_secs(1);
        match tokio::time::timeout(left, answer).await {
            Ok(Ok(Ok(answered))) => out.answered_ms.push(answered),
            Ok(Ok(Err(e))) => out.failures.push(format!("run {r}: the notice: {e}")),
            _ => out
                .failures
                .push(format!("run {r}: the notice was not answered")),
        }
        match outcome {
            Ok(()) => {
                eprintln!("  notice run {r}: {ms:.0} ms");
                out.verified_ms.push(ms);
                // The traffic moved, but the switchover still reads its targets back: the
                // next run resets the shared HAProxy backend only once it has finished.
                match switchover_finished(c.switchovers, &m.name).await {
                    Ok(so) => {
                        let b = breakdown(notice_at, ms, &so);
                        eprintln!("    {b}");
                        out.breakdowns.push(b);
                    }
                    Err(why) => out.failures.push(format!("run {r}: {why}")),
                }
            }
            Err(why) => out.failures.push(format!("run {r}: {why}")),
        }
    }
    let _ = c.haproxy.ensure_active(&backend, &hp, &hs).await;
    out
}

/// Post a signed `frozen` notice for `account` to `hook`; the time from `t0` until the
/// webhook answered 2xx, in ms.
async fn post_notice(
    http: reqwest::Client,
    hook: String,
    account: String,
    id: String,
    t0: Instant,
) -> Result<f64, String> {
    use understudy::provider::notice::{Notice, NoticeEvent, SIGNATURE_HEADER, TIMESTAMP_HEADER};
    let now = chrono::Utc::now();
    let signed = Notice {
        account,
        event: NoticeEvent::Frozen,
        reason: "bench".into(),
        at: now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        id,
    }
    .sign(NOTICE_SECRET.as_bytes(), now)
    .map_err(|e| e.to_string())?;
    let resp = http
        .post(&hook)
        .header("content-type", "application/json")
        .header(TIMESTAMP_HEADER, &signed.timestamp)
        .header(SIGNATURE_HEADER, &signed.signature)
        .body(signed.body)
        .send()
        .await
        .map_err(|e| understudy::notify::deliver::chain(&e))?;
    let ms = t0.elapsed().as_secs_f64() * 1000.0;
    if resp.status().is_success() {
        Ok(ms)
    } else {
        Err(format!(
            "answered {} after {ms:.0} ms: {}",
            resp.status(),
            resp.text().await.unwrap_or_default()
        ))
    }
}

/// Where a run's time went, from the Switchover's status (its clock and the bench's are the
/// machine's): `queued_ms` from the notice until the switchover started, each step's
/// `started → finished` by the step's name (each includes the write of its intent to the
/// API server), and `after_steps_ms` from the end of the last step that had finished when
/// the bench saw the traffic moved until then.
fn breakdown(
    notice_at: chrono::DateTime<chrono::Utc>,
    verified_ms: f64,
    so: &Switchover,
) -> serde_json::Value {
    let at = |s: &Option<String>| {
        s.as_deref()
            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
            .map(|t| t.with_timezone(&chrono::Utc))
    };
    let ms = |a: chrono::DateTime<chrono::Utc>, b: chrono::DateTime<chrono::Utc>| {
        (b - a).num_milliseconds()
    };
    let Some(st) = so.status.as_ref() else {
        return json!({"error": "no status"});
    };
    let seen = notice_at + chrono::Duration::milliseconds(verified_ms as i64);
    let steps: serde_json::Map<String, serde_json::Value> = st
        .steps
        .iter()
        .filter_map(|s| {
            Some((
                s.name.clone(),
                json!(ms(at(&s.started_at)?, at(&s.finished_at)?)),
            ))
        })
        .collect();
    let last_before = st
        .steps
        .iter()
        .filter_map(|s| at(&s.finished_at))
        .filter(|t| *t <= seen)
        .max();
    json!({
        "queued_ms": at(&st.started_at).map(|t| ms(notice_at, t)),
        "steps_ms": steps,
        "after_steps_ms": last_before.map(|t| ms(t, seen)),
    })
}

/// Wait (at most [`RUN_DEADLINE`]) until `pair` has a Switchover and all of them are
/// finished; the newest of them, or Err if one did not succeed, or none finished in time.
async fn switchover_finished(
    switchovers: &Api<Switchover>,
    pair: &str,
) -> Result<Switchover, String> {
    let until = Instant::now() + RUN_DEADLINE;
    loop {
        if let Ok(list) = switchovers.list(&ListParams::default()).await {
            if let Some(why) = failed_of(&list.items, pair) {
                return Err(why);
            }
            let mine = list.items.iter().filter(|so| so.spec.pair == pair);
            let mine: Vec<&Switchover> = mine.collect();
            if !mine.is_empty()
                && mine
                    .iter()
                    .all(|so| so.status.as_ref().is_some_and(|s| s.phase.is_finished()))
            {
                let newest = mine
                    .into_iter()
                    .max_by_key(|so| so.metadata.creation_timestamp.clone().map(|t| t.0))
                    .cloned();
                return newest.ok_or_else(|| "no switchover".into());
            }
        }
        if Instant::now() >= until {
            return Err(format!(
                "the switchover did not finish within {} s",
                RUN_DEADLINE.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The first Failed or Cancelled Switchover of `pair`, as "NAME PHASE: MESSAGE".
async fn failed_switchover(switchovers: &Api<Switchover>, pair: &str) -> Option<String> {
    let list = switchovers.list(&ListParams::default()).await.ok()?;
    failed_of(&list.items, pair)
}

/// [`failed_switchover`] among `items`.
fn failed_of(items: &[Switchover], pair: &str) -> Option<String> {
    items.iter().find_map(|so| {
        let st = so.status.as_ref()?;
        (so.spec.pair == pair
            && matches!(
                st.phase,
                SwitchoverPhase::Failed | SwitchoverPhase::Cancelled
            ))
        .then(|| {
            format!(
                "switchover {} {:?}: {}",
                so.metadata.name.clone().unwrap_or_default(),
                st.phase,
                st.message.clone().unwrap_or_default()
            )
        })
    })
}
