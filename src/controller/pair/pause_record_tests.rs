use super::*;
use crate::api::AccountPair;

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn cond(status: &str) -> Condition {
    Condition {
        type_: CONDITION.into(),
        status: status.into(),
        reason: String::new(),
        message: String::new(),
        last_transition_time: None,
        observed_generation: Some(3),
    }
}

fn seen(paused: bool, manager: &str) -> Seen {
    Seen {
        paused,
        generation: 4,
        setter: Some(Setter {
            manager: manager.into(),
            at: Some(t("2026-03-01T02:10:00Z")),
        }),
        reason: None,
        reason_at: None,
    }
}

/// A pair as the API server returns it after `kubectl patch … spec.paused`.
fn pair_patched(paused: bool) -> AccountPair {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "understudy.dev/v1alpha1",
        "kind": "AccountPair",
        "metadata": {
            "name": "wecom", "generation": 4,
            "annotations": { "understudy.dev/pause-reason": "INC-7", "understudy.dev/paused-at": "2026-03-01T02:09:58Z" },
            "managedFields": [
                { "manager": "kubectl-client-side-apply", "operation": "Update", "time": "2026-02-01T00:00:00Z",
                  "fieldsType": "FieldsV1", "fieldsV1": { "f:spec": { "f:primary": {}, "f:standby": {} } } },
                { "manager": "understudy", "operation": "Update", "subresource": "status", "time": "2026-03-01T02:10:05Z",
                  "fieldsType": "FieldsV1", "fieldsV1": { "f:status": { "f:phase": {} } } },
                { "manager": "kubectl-patch", "operation": "Update", "time": "2026-03-01T02:10:00Z",
                  "fieldsType": "FieldsV1", "fieldsV1": { "f:spec": { "f:paused": {} } } }
            ]
        },
        "spec": {
            "paused": paused,
            "primary": { "endpoint": "http://p", "accountId": "corp-a", "credentialsSecretRef": { "name": "t" } },
            "standby": { "endpoint": "http://p", "accountId": "corp-b", "credentialsSecretRef": { "name": "t" } },
            "replication": { "kafka": { "bootstrapServers": "k:9092" } },
            "traffic": { "dns": [{ "servers": ["ns1:53"], "zone": "example.com.", "name": "api", "type": "A", "ttl": 5,
                                   "tsigSecretRef": { "name": "tsig" }, "primary": ["10.0.0.1"], "standby": ["10.0.0.2"] }] }
        }
    }))
    .unwrap()
}

#[test]
fn who_set_spec_paused_is_read_from_managed_fields() {
    let s = Seen::of(&pair_patched(true));
    assert_eq!(
        s.setter,
        Some(Setter {
            manager: "kubectl-patch".into(),
            at: Some(t("2026-03-01T02:10:00Z")),
        }),
        "the entry owning f:spec.f:paused, not the status writer nor the creator"
    );
    assert_eq!(s.generation, 4);
    assert_eq!(s.reason.as_deref(), Some("INC-7"));
    let mut never = pair_patched(false);
    never
        .metadata
        .managed_fields
        .as_mut()
        .unwrap()
        .retain(|m| m.manager.as_deref() != Some("kubectl-patch"));
    assert_eq!(Seen::of(&never).setter, None);
}

#[test]
fn a_pause_made_with_kubectl_patch_is_recorded_once_with_who_and_when() {
    let mut s = seen(true, "kubectl-patch");
    s.reason = Some("INC-7".into());
    s.reason_at = Some(t("2026-03-01T02:09:58Z"));
    let d = decide(&s, Some(&cond("False")));
    let (k, data) = d.record.expect("a record");
    assert_eq!(k, kind::PAUSED);
    assert_eq!(
        data,
        serde_json::json!({
            "observedBy": "operator",
            "changedBy": "kubectl-patch",
            "changedAt": "2026-03-01T02:10:00Z",
            "generation": 4,
            "reason": "INC-7",
        })
    );
    let c = d.condition.unwrap();
    assert!(c.paused);
    assert_eq!(c.reason, "Paused");
    assert!(c.message.contains("set by kubectl-patch"), "{}", c.message);
    // Once the condition says so (this replica or the next one), nothing more.
    assert_eq!(
        decide(&s, Some(&cond("True"))),
        Decision {
            record: None,
            condition: None
        }
    );
}

#[test]
fn a_resume_made_with_kubectl_edit_is_recorded_with_the_reason_it_ends() {
    let mut s = seen(false, "kubectl-edit");
    s.reason = Some("INC-7".into());
    let d = decide(&s, Some(&cond("True")));
    let (k, data) = d.record.expect("a record");
    assert_eq!(k, kind::RESUMED);
    assert_eq!(data["previousReason"], "INC-7");
    assert_eq!(data["changedBy"], "kubectl-edit");
    assert!(!d.condition.unwrap().paused);
    assert_eq!(decide(&s, Some(&cond("False"))).record, None);
}

#[test]
fn the_plugin_records_its_own_pauses_and_a_first_look_records_nothing() {
    for paused in [true, false] {
        let s = seen(paused, PLUGIN_FIELD_MANAGER);
        let d = decide(&s, Some(&cond(if paused { "False" } else { "True" })));
        assert_eq!(
            d.record, None,
            "the plugin wrote the record (paused={paused})"
        );
        assert_eq!(d.condition.unwrap().paused, paused, "the condition follows");
        // A pair seen for the first time, or whose condition is not a state.
        for recorded in [None, Some(cond("Unknown"))] {
            let d = decide(&seen(paused, "kubectl-patch"), recorded.as_ref());
            assert_eq!(d.record, None);
            assert_eq!(d.condition.unwrap().paused, paused);
        }
    }
    let c = decide(&seen(true, PLUGIN_FIELD_MANAGER), None)
        .condition
        .unwrap();
    assert!(
        c.message.contains("with kubectl understudy pause"),
        "{}",
        c.message
    );
}

#[test]
fn a_reason_left_by_an_earlier_pause_is_not_this_pause_s_reason() {
    let mut s = seen(true, "kubectl-patch");
    s.reason = Some("last week's incident".into());
    s.reason_at = Some(t("2026-02-22T08:00:00Z"));
    let (_, data) = decide(&s, Some(&cond("False"))).record.unwrap();
    assert_eq!(data["reason"], serde_json::Value::Null);
    // Annotated by hand (no time): taken.
    s.reason_at = None;
    let (_, data) = decide(&s, Some(&cond("False"))).record.unwrap();
    assert_eq!(data["reason"], "last week's incident");
    // Unknown setter (no managedFields entry): recorded without a name.
    s.setter = None;
    let (_, data) = decide(&s, Some(&cond("False"))).record.unwrap();
    assert_eq!(data["changedBy"], serde_json::Value::Null);
    assert_eq!(data["changedAt"], serde_json::Value::Null);
}
