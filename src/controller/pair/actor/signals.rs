//! The pair's task taking its inputs: signals (polls, probes, notices, replication's
//! feed errors) for the detectors, verdict changes, notices (replay-checked and
//! persisted before they count) and provider activity for risk control.

use super::*;

/// What taking a signal leaves to decide: whether its side's verdict changed, and
/// which side it was about.
pub(super) struct ToDecide {
    verdict_changed: bool,
    side: Side,
}

impl PairActor {
    /// Feed a signal to its side's detector; act on a verdict change.
    pub(super) async fn observe(&mut self, signal: Signal) {
        let next = self.take_signal(signal);
        self.decide(next).await;
    }

    /// Feed a signal to its side's detector and record what changed (verdict, metrics,
    /// audit, Events); the decisions it calls for are [`Self::decide`]'s. `None` while
    /// the replica may not act.
    fn take_signal(&mut self, signal: Signal) -> Option<ToDecide> {
        // While this replica's claim on the pair's shard has lapsed (a slow Lease pass
        // it may still renew, `shards::keep_running`), the pair observes nothing: a verdict
        // it took now would page, record and count it, and the shard's next holder may be
        // doing the same. The next poll after the renewal observes again.
        if !self.may_act() {
            return None;
        }
        let now = Utc::now();
        let i = idx(signal.side);
        let change = self.detectors[i].observe(&signal, now);
        if let SignalKind::Poll(outcome) = &signal.kind {
            self.misconfigured[i] = misconfigured(outcome, self.misconfigured[i].take());
        }
        let verdict = self.detectors[i].verdict().kind;
        metrics()
            .freeze_signals_total
            .with_label_values(&[&self.ns, &self.name, signal.source(), verdict.as_str()])
            .inc();
        if let SignalKind::Notice { notice, reason } = &signal.kind {
            self.audit(
                crate::audit::kind::NOTICE,
                serde_json::json!({
                    "side": signal.side.as_str(),
                    "account": self.account(signal.side),
                    "notice": notice.as_str(),
                    "reason": reason,
                    "at": crate::controller::conditions::rfc3339_ms(signal.at),
                }),
            );
        }
        let verdict_changed = change.is_some();
        if let Some(change) = change {
            self.on_verdict_change(change);
        }
        Some(ToDecide {
            verdict_changed,
            side: signal.side,
        })
    }

    /// Decide what a taken signal calls for: a failover after a verdict change, a
    /// failback after news of the primary while the standby serves.
    pub(super) async fn decide(&mut self, next: Option<ToDecide>) {
        let Some(next) = next else { return };
        if next.verdict_changed {
            self.evaluate_failover().await;
        }
        if next.side == Side::Primary && self.active == Side::Standby {
            self.evaluate_failback().await;
        }
    }

    pub(super) fn on_verdict_change(&mut self, change: VerdictChange) {
        let side = change.side.as_str();
        set_account_status(&self.ns, &self.name, side, change.to.kind.as_str());
        tracing::info!(pair = %self.name, side, from = change.from.kind.as_str(), to = change.to.kind.as_str(), reason = %change.to.reason, "verdict changed");
        let warning = change.to.kind.as_str() != "Healthy";
        let reason = format!("{}{}", capitalise(side), change.to.kind.as_str());
        let note = format!(
            "{side} account {}: {} → {} ({})",
            self.account(change.side),
            change.from.kind.as_str(),
            change.to.kind.as_str(),
            change.to.reason
        );
        let last_signal = self.detectors[idx(change.side)]
            .last_signal()
            .map(str::to_string);
        self.audit(
            crate::audit::kind::VERDICT,
            serde_json::json!({
                "side": side,
                "account": self.account(change.side),
                "from": change.from.kind.as_str(),
                "to": change.to.kind.as_str(),
                "reason": change.to.reason,
                "since": crate::controller::conditions::rfc3339_ms(change.to.since),
                "signal": last_signal,
            }),
        );
        self.event(warning, &reason, "Detect", note);
        self.notify_verdict(&change);
    }

    /// A side turning Frozen or Banned, and such a side healthy again, told to people.
    fn notify_verdict(&self, change: &VerdictChange) {
        use crate::detection::verdict::VerdictKind;
        use crate::notify::{Event, StoppedState};
        let stopped = |k: &VerdictKind| match k {
            VerdictKind::Frozen => Some(StoppedState::Frozen),
            VerdictKind::Banned => Some(StoppedState::Banned),
            _ => None,
        };
        let event = match (stopped(&change.from.kind), stopped(&change.to.kind)) {
            (_, Some(state)) => Event::SideFrozen {
                side: change.side,
                state,
                evidence: change.to.reason.clone(),
            },
            (Some(_), None) if change.to.kind == VerdictKind::Healthy => Event::Resolved {
                detail: format!(
                    "the {} account {} is healthy again ({})",
                    change.side,
                    self.account(change.side),
                    change.to.reason
                ),
            },
            _ => return,
        };
        self.env
            .notifications
            .send(&self.ns, &self.name, self.active, event);
    }

    /// A verified notice: admitted once (its id persisted first), ordered by its own
    /// time against the side's other observations. The outcome is the answer to the
    /// provider, due once the notice is recorded and taken; the decisions it calls for
    /// (a failover: the operator-wide cap, the Switchover) are returned to be made after
    /// answering, so a slow decision does not outlast the provider's delivery timeout
    /// (WeChat gives up after 5 s and sends the notice again).
    pub(super) async fn on_notice(
        &mut self,
        n: ReceivedNotice,
    ) -> (NoticeOutcome, Option<ToDecide>) {
        if !self.may_act() {
            return (
                NoticeOutcome::Failed("this replica no longer holds the lease; retry".into()),
                None,
            );
        }
        match self
            .seen
            .admit(&n.id, n.received, self.env.opts.notice_window)
        {
            Admission::Replay { seen_at } => {
                let msg = format!(
                    "notice {} was already received at {seen_at} (replay refused)",
                    n.id
                );
                return (NoticeOutcome::Replay(msg), None);
            }
            Admission::Full => {
                let msg = format!(
                    "notice {} not recorded: {} notices of this pair are still inside their window; retry later",
                    n.id,
                    crate::controller::pair::seen::MAX_SEEN
                );
                return (NoticeOutcome::Failed(msg), None);
            }
            Admission::Admit => {}
        }
        let entries = self.seen.entries().to_vec();
        if let Err(e) = self
            .persist(serde_json::json!({ "seenNotices": entries }))
            .await
        {
            self.seen.forget(&n.id);
            let msg = format!("the notice could not be recorded ({e}); nothing changed, retry");
            return (NoticeOutcome::Failed(msg), None);
        }
        let i = idx(n.side);
        let newest = self.detectors[i].last_observed_at();
        let signal = Signal::notice(n.side, n.at, n.event, &n.reason);
        let stale = self.detectors[i].drops(&signal);
        tracing::info!(pair = %self.name, side = n.side.as_str(), event = n.event.as_str(), at = %n.at, stale, "verified provider notice");
        let next = self.take_signal(signal);
        let outcome = NoticeOutcome::Accepted(match newest {
            Some(t) if stale => format!(
                "recorded; it is dated {} but the {} side was observed later ({}), so it does not change the verdict",
                crate::controller::conditions::rfc3339_ms(n.at),
                n.side,
                crate::controller::conditions::rfc3339_ms(t)
            ),
            _ => "accepted".into(),
        });
        (outcome, next)
    }

    pub(super) async fn on_replication(&mut self, report: ReplicationReport) {
        if report.snapshot.is_some() {
            self.replication_reported = true;
        }
        let error = report.snapshot.as_ref().and_then(|s| {
            s.source_error
                .clone()
                .map(|e| (e, s.source_error_seq, s.source_error_at))
        });
        let from = report.from;
        self.report = Some(report);
        // One failed read is one observation, dated when it failed: the same read
        // repeated by the next snapshots is not a new one.
        let Some((err, seq, at)) = error else {
            return;
        };
        let Some(at) = self.feed_reads.take(from, seq, at, Utc::now()) else {
            return;
        };
        if let Some(signal) = Signal::replication_error(from, at, &err) {
            self.observe(signal).await;
        }
    }

    pub(super) fn on_activity(&mut self, events: Vec<crate::provider::ActivityEvent>) {
        // As `observe`: nothing is taken while the claim has lapsed.
        if !self.may_act() {
            return;
        }
        let now = Utc::now();
        let new = self.risk.observe(&events, now);
        self.risk_findings = self.risk.active_findings(now);
        let m = metrics();
        for kind in crate::detection::risk::RiskKind::ALL {
            let on = self.risk_findings.iter().any(|f| f.kind == kind);
            m.risk_warning
                .with_label_values(&[&self.ns, &self.name, kind.as_str()])
                .set(i64::from(on));
        }
        for f in new {
            self.audit(
                crate::audit::kind::RISK_WARNING,
                risk_record(&f, self.active, self.account(self.active)),
            );
            self.event(true, "RiskWarning", "Detect", f.message.clone());
            self.env.notifications.send(
                &self.ns,
                &self.name,
                self.active,
                crate::notify::Event::RiskWarning {
                    side: self.active,
                    detail: f.message.clone(),
                },
            );
        }
    }
}

/// The audit record of a new risk finding on the active side's activity.
pub(super) fn risk_record(
    f: &crate::detection::risk::RiskFinding,
    side: Side,
    account: &str,
) -> serde_json::Value {
    use crate::controller::conditions::rfc3339_ms;
    serde_json::json!({
        "side": side.as_str(),
        "account": account,
        "risk": f.kind.as_str(),
        "message": f.message,
        "at": rfc3339_ms(f.at),
        "activeUntil": rfc3339_ms(f.active_until),
    })
}

/// What a side's setup lacks after a poll: what the provider said when it refused the
/// poll as misconfigured; nothing once a poll is answered; unchanged when it got no
/// answer at all (that says nothing about the setup).
pub(super) fn misconfigured(outcome: &PollOutcome, before: Option<String>) -> Option<String> {
    match outcome {
        PollOutcome::NoAnswer(n) if n.cause == NoAnswerCause::Misconfigured => {
            Some(n.detail.clone())
        }
        PollOutcome::NoAnswer(_) => before,
        PollOutcome::Status { .. } => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detection::signal::NoAnswer;

    fn no_answer(cause: NoAnswerCause, detail: &str) -> PollOutcome {
        PollOutcome::NoAnswer(NoAnswer {
            cause,
            detail: detail.into(),
        })
    }

    #[test]
    fn a_risk_finding_is_recorded_with_its_kind_side_and_times() {
        use crate::detection::risk::{RiskFinding, RiskKind};
        let at = chrono::DateTime::parse_from_rfc3339("2026-03-01T02:10:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let f = RiskFinding {
            kind: RiskKind::MassAdds,
            message: "312 contacts added in 10m".into(),
            at,
            active_until: at + chrono::TimeDelta::hours(1),
        };
        assert_eq!(
            risk_record(&f, Side::Standby, "corp-b"),
            serde_json::json!({
                "side": "standby",
                "account": "corp-b",
                "risk": "mass_adds",
                "message": "312 contacts added in 10m",
                "at": "2026-03-01T02:10:00.000Z",
                "activeUntil": "2026-03-01T03:10:00.000Z",
            })
        );
    }

    #[test]
    fn a_misconfigured_side_stays_so_until_a_poll_is_answered() {
        let ip = "60020 不安全的访问IP: add the egress IP";
        let m = misconfigured(&no_answer(NoAnswerCause::Misconfigured, ip), None);
        assert_eq!(m.as_deref(), Some(ip));
        // A timeout says nothing about the setup.
        let m = misconfigured(&no_answer(NoAnswerCause::Timeout, "slow"), m);
        assert_eq!(m.as_deref(), Some(ip));
        let m = misconfigured(
            &PollOutcome::Status {
                state: crate::model::AccountState::Active,
                reason: String::new(),
            },
            m,
        );
        assert_eq!(m, None);
        // A refused credential is not a misconfiguration of this kind.
        assert_eq!(
            misconfigured(&no_answer(NoAnswerCause::Unauthorized, "bad secret"), None),
            None
        );
    }
}
