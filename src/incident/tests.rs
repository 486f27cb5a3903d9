use super::*;
use crate::incident::AlertAction;

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-29T10:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn event(fp: &str, action: AlertAction, sev: Option<Severity>) -> AlertEvent {
    AlertEvent {
        dedup_key: "group".into(),
        fingerprint: Some(fp.into()),
        action,
        summary: format!("alert {fp}"),
        incident_title: Some("Group title".into()),
        source: "test".into(),
        severity: sev,
        labels: Default::default(),
        details: serde_json::Value::Null,
        links: vec![],
        left_out: None,
        expires_at: None,
    }
}

#[test]
fn ids_parse_both_ways() {
    assert_eq!("INC-42".parse::<IncidentId>().unwrap(), IncidentId(42));
    assert_eq!("inc-7".parse::<IncidentId>().unwrap(), IncidentId(7));
    assert_eq!("12".parse::<IncidentId>().unwrap(), IncidentId(12));
    assert!("INC-".parse::<IncidentId>().is_err());
    assert!("0".parse::<IncidentId>().is_err());
    assert!("+5".parse::<IncidentId>().is_err());
    assert!("é€1".parse::<IncidentId>().is_err());
    assert_eq!(IncidentId(3).to_string(), "INC-3");
}

#[test]
fn open_then_repeat_then_group_then_resolve() {
    let c = Incident::open(
        IncidentId(1),
        "api",
        "am",
        &event("a", AlertAction::Trigger, Some(Severity::Sev3)),
        t0(),
    );
    assert_eq!(c.incident.title, "Group title");
    assert_eq!(c.incident.status, Status::Triggered);
    assert_eq!(c.entries.len(), 2);
    assert_eq!(c.entries[1].seq, 1);

    // A repeat of the same alert adds no timeline entry.
    let repeat = c
        .incident
        .apply_alert(&event("a", AlertAction::Trigger, None), t0());
    assert!(repeat.entries.is_empty());
    assert_eq!(repeat.incident.alerts["a"].count, 2);
    assert_eq!(repeat.incident.event_count, 2);

    // A second, worse alert joins and raises the severity.
    let b = repeat.incident.apply_alert(
        &event("b", AlertAction::Trigger, Some(Severity::Sev1)),
        t0(),
    );
    assert_eq!(b.incident.severity, Severity::Sev1);
    assert_eq!(b.entries.len(), 2);

    // One resolves: still open. The other resolves: closed.
    let ra = b
        .incident
        .apply_alert(&event("a", AlertAction::Resolve, None), t0());
    assert_eq!(ra.incident.status, Status::Triggered);
    assert_eq!(ra.incident.firing_alerts(), 1);
    let rb = ra
        .incident
        .apply_alert(&event("b", AlertAction::Resolve, None), t0());
    assert_eq!(rb.incident.status, Status::Resolved);
    assert!(matches!(
        rb.entries.last().unwrap().event,
        TimelineEvent::Resolved { .. }
    ));
}

#[test]
fn whole_incident_resolve_closes_everything() {
    let c = Incident::open(
        IncidentId(1),
        "api",
        "am",
        &event("a", AlertAction::Trigger, None),
        t0(),
    );
    let c = c
        .incident
        .apply_alert(&event("b", AlertAction::Trigger, None), t0());
    let mut all = event("x", AlertAction::Resolve, None);
    all.fingerprint = None;
    let r = c.incident.apply_alert(&all, t0());
    assert_eq!(r.incident.status, Status::Resolved);
    assert_eq!(r.incident.firing_alerts(), 0);
}

#[test]
fn acknowledge_and_resolve_by_people() {
    let c = Incident::open(
        IncidentId(9),
        "api",
        "pd",
        &event("a", AlertAction::Trigger, None),
        t0(),
    );
    let later = t0() + chrono::Duration::minutes(3);
    let ack = c.incident.acknowledge(Actor::user("alice"), later).unwrap();
    assert_eq!(ack.incident.acknowledged_at, Some(later));
    assert_eq!(
        ack.incident.acknowledge(Actor::System, later),
        Err(IncidentError::AlreadyAcknowledged(IncidentId(9)))
    );
    let res = ack
        .incident
        .resolve(Actor::user("bob"), Some("rolled back".into()), later)
        .unwrap();
    assert_eq!(res.incident.status, Status::Resolved);
    assert_eq!(res.entries[0].event.describe(), "Resolved: rolled back");
    assert_eq!(
        res.incident.resolve(Actor::System, None, later),
        Err(IncidentError::AlreadyResolved(IncidentId(9)))
    );
}

#[test]
fn resolving_the_only_alert_records_it_on_the_alert() {
    let c = Incident::open(
        IncidentId(2),
        "api",
        "pd",
        &event("a", AlertAction::Trigger, None),
        t0(),
    );
    let later = t0() + chrono::Duration::minutes(10);
    let mut resolve = event("a", AlertAction::Resolve, None);
    resolve.details = serde_json::json!({"endsAt": "2026-11-29T10:10:00Z"});
    let r = c.incident.apply_alert(&resolve, later);
    assert_eq!(r.incident.status, Status::Resolved);
    let alert = &r.incident.alerts["a"];
    assert_eq!(alert.count, 2);
    assert_eq!(alert.last_seen, later);
    assert_eq!(alert.details["endsAt"], "2026-11-29T10:10:00Z");
    // One line: the incident's resolve, not the alert's as well.
    assert_eq!(r.entries.len(), 1);
    assert_eq!(r.incident.resolved_at, Some(later));
}

#[test]
fn a_resolve_for_an_unknown_alert_changes_nothing_but_counts() {
    let c = Incident::open(
        IncidentId(3),
        "api",
        "am",
        &event("a", AlertAction::Trigger, None),
        t0(),
    );
    let r = c
        .incident
        .apply_alert(&event("zzz", AlertAction::Resolve, None), t0());
    assert_eq!(r.incident.status, Status::Triggered);
    assert!(r.entries.is_empty());
}

#[test]
fn the_timeline_is_a_hash_chain() {
    let c = Incident::open(
        IncidentId(5),
        "api",
        "am",
        &event("a", AlertAction::Trigger, None),
        t0(),
    );
    let mut all = c.entries.clone();
    let ack = c.incident.acknowledge(Actor::user("alice"), t0()).unwrap();
    all.extend(ack.entries.clone());
    let res = ack
        .incident
        .resolve(Actor::user("bob"), None, t0())
        .unwrap();
    all.extend(res.entries.clone());
    let head = res.incident.timeline_head.clone();
    assert_eq!(all[0].prev, "");
    assert_eq!(all[1].prev, all[0].digest());
    verify_chain(&all, &head, VerifyOptions::default()).unwrap();

    // Edit an entry: the next one no longer matches.
    let mut edited = all.clone();
    edited[1].actor = Actor::user("mallory");
    let e = verify_chain(&edited, &head, VerifyOptions::default()).unwrap_err();
    assert_eq!(e.seq, 2);
    assert!(e.reason.contains("entry 1 was changed"), "{e}");
    // Delete the last entry: the head no longer matches.
    let e = verify_chain(&all[..all.len() - 1], &head, VerifyOptions::default()).unwrap_err();
    assert!(e.reason.contains("removed"), "{e}");
    // Delete one in the middle.
    let mut gap = all.clone();
    gap.remove(1);
    assert_eq!(
        verify_chain(&gap, &head, VerifyOptions::default())
            .unwrap_err()
            .seq,
        1
    );
}

#[test]
fn alerts_beyond_the_cap_are_counted_and_hold_the_incident_open() {
    let t = t0();
    let mut inc = Incident::open(
        IncidentId(1),
        "svc",
        "am",
        &event("a0", AlertAction::Trigger, None),
        t,
    )
    .incident;
    let mut entries = Vec::new();
    for i in 1..=MAX_TRACKED_ALERTS + 2 {
        inc.apply_alert_in(
            &event(&format!("a{i}"), AlertAction::Trigger, None),
            t,
            &mut entries,
        );
    }
    assert_eq!(inc.alerts.len(), MAX_TRACKED_ALERTS);
    assert_eq!(inc.untracked_alerts, 3);
    let said: Vec<_> = entries
        .iter()
        .filter(|e| matches!(e.event, TimelineEvent::AlertsUntracked { .. }))
        .collect();
    assert_eq!(said.len(), 1, "said once");
    // Every tracked alert resolving one by one does not resolve it...
    let fps: Vec<String> = inc.alerts.keys().cloned().collect();
    for fp in fps {
        inc.apply_alert_in(&event(&fp, AlertAction::Resolve, None), t, &mut entries);
    }
    assert_eq!(inc.status, Status::Triggered);
    // ...the whole group's resolve does.
    let mut all = event("x", AlertAction::Resolve, None);
    all.fingerprint = None;
    inc.apply_alert_in(&all, t, &mut entries);
    assert_eq!(inc.status, Status::Resolved);
    assert_eq!(inc.untracked_alerts, 0);
}

#[test]
fn expired_alerts_resolve_and_the_last_one_resolves_the_incident() {
    let t = t0();
    let mut a = event("a", AlertAction::Trigger, None);
    a.expires_at = Some(t + chrono::Duration::minutes(5));
    let mut b = event("b", AlertAction::Trigger, None);
    b.expires_at = Some(t + chrono::Duration::minutes(10));
    let inc = Incident::open(IncidentId(1), "svc", "am", &a, t).incident;
    let inc = inc.apply_alert(&b, t).incident;
    assert_eq!(inc.next_expiry(), a.expires_at);
    assert!(inc.expire(t + chrono::Duration::minutes(4)).is_none());
    let first = inc.expire(t + chrono::Duration::minutes(5)).unwrap();
    assert_eq!(first.incident.status, Status::Triggered);
    assert_eq!(first.incident.next_expiry(), b.expires_at);
    let last = first
        .incident
        .expire(t + chrono::Duration::minutes(11))
        .unwrap();
    assert_eq!(last.incident.status, Status::Resolved);
    assert_eq!(last.incident.next_expiry(), None);
    assert!(matches!(
        last.entries.last().unwrap().event,
        TimelineEvent::Resolved { .. }
    ));
}

#[test]
fn a_person_without_principal_serializes_as_before_and_with_one_round_trips() {
    let old = serde_json::to_value(Actor::user("alice")).unwrap();
    assert_eq!(old, serde_json::json!({"kind": "user", "name": "alice"}));
    let new = Actor::authenticated("alice", "slack:T1/U1");
    let json = serde_json::to_value(&new).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"kind": "user", "name": {"user": "alice", "principal": "slack:T1/U1"}})
    );
    let back: Actor = serde_json::from_value(json).unwrap();
    assert_eq!(back, new);
    assert_eq!(back.to_string(), "alice");
    assert_eq!(back.principal(), Some("slack:T1/U1"));
}

#[test]
fn a_keyed_chain_fails_verification_after_a_forger_recomputes_it_without_the_key() {
    use crate::secret::Secret;
    let key = Secret::new("k".repeat(40));
    let c = Incident::open(
        IncidentId(3),
        "svc",
        "am",
        &event("a", AlertAction::Trigger, None),
        t0(),
    );
    // The opening entries were written before the key was set.
    let mut all = c.entries.clone();
    let unkeyed = all.len();
    let ack = c.incident.acknowledge(Actor::user("alice"), t0()).unwrap();
    let mut sealed = ack.entries.clone();
    let mut head = seal(&mut sealed, &key).unwrap();
    all.extend(sealed);
    let mut inc = ack.incident;
    inc.timeline_head = head.clone();
    let res = inc.resolve(Actor::user("bob"), None, t0()).unwrap();
    let mut sealed = res.entries.clone();
    head = seal(&mut sealed, &key).unwrap();
    all.extend(sealed);
    assert!(head.starts_with("hmac-sha256:"));

    let with_key = VerifyOptions {
        key: Some(&key),
        allow_unkeyed: true,
        anchor: None,
    };
    let r = verify_chain(&all, &head, with_key).unwrap();
    assert_eq!((r.entries, r.keyed), (all.len(), all.len() - unkeyed));
    // Without --allow-unkeyed the pre-key entry is named.
    let strict = VerifyOptions {
        allow_unkeyed: false,
        ..with_key
    };
    let e = verify_chain(&all, &head, strict).unwrap_err();
    assert!(e.reason.contains("not linked with the audit key"), "{e}");
    // Without the key a keyed chain cannot be checked.
    let e = verify_chain(&all, &head, VerifyOptions::default()).unwrap_err();
    assert!(e.reason.contains("give the key"), "{e}");

    // The forger changes who acknowledged and recomputes every link with
    // plain SHA-256 (all they can do without the key): it fails.
    let mut forged = all.clone();
    forged[1].actor = Actor::user("mallory");
    let mut prev = String::new();
    for e in forged.iter_mut() {
        e.prev = std::mem::take(&mut prev);
        prev = e.digest();
    }
    let e = verify_chain(&forged, &prev, strict).unwrap_err();
    assert!(e.reason.contains("not linked with the audit key"), "{e}");
    // Accepting pre-key entries accepts a wholly unkeyed chain, and says
    // that no entry is keyed (the CLI prints the warning).
    assert_eq!(verify_chain(&forged, &prev, with_key).unwrap().keyed, 0);
    // Re-chaining only the entries after the edit (keeping keyed links it
    // cannot compute) fails: a plain link follows keyed ones.
    let mut partial = all.clone();
    partial[3].actor = Actor::user("mallory");
    let partial_head = partial[3].digest();
    let e = verify_chain(&partial, &partial_head, with_key).unwrap_err();
    assert!(e.reason.contains("recomputed"), "{e}");
    // Recomputing with a guessed key fails too.
    let mut guessed = forged.clone();
    let other = Secret::new("x".repeat(40));
    let guessed_head = seal(&mut guessed[1..], &other).unwrap();
    let e = verify_chain(&guessed, &guessed_head, with_key).unwrap_err();
    assert!(e.reason.contains("was changed"), "{e}");

    // An anchor recorded outside the store must be in the chain.
    let anchored = VerifyOptions {
        anchor: Some(&head),
        ..with_key
    };
    assert_eq!(
        verify_chain(&all, &head, anchored).unwrap().anchored_at,
        Some(all.len() as u64 - 1)
    );
    let stale = VerifyOptions {
        anchor: Some("hmac-sha256:00"),
        ..with_key
    };
    let e = verify_chain(&all, &head, stale).unwrap_err();
    assert!(e.reason.contains("recorded head"), "{e}");
}

#[test]
fn status_updates_are_kept_capped_and_recorded_and_visibility_toggles() {
    let ev = event("a", AlertAction::Trigger, None);
    let mut inc = Incident::open(IncidentId(1), "api", "am", &ev, t0()).incident;
    let by = Actor::user("alice");
    for bad in ["", "   ", &"x".repeat(UPDATE_MAX + 1)] {
        assert!(matches!(
            inc.post_update(bad, by.clone(), t0()),
            Err(IncidentError::Unchanged(_))
        ));
    }
    let c = inc
        .post_update("  We are rolling back.  ", by.clone(), t0())
        .unwrap();
    assert_eq!(c.incident.updates[0].text, "We are rolling back.");
    assert_eq!(
        c.entries[0].event,
        TimelineEvent::StatusUpdate {
            text: "We are rolling back.".into()
        }
    );
    inc = c.incident;
    let before = inc.timeline_len;
    for i in 0..KEPT_UPDATES + 5 {
        inc = inc
            .post_update(&format!("update {i}"), by.clone(), t0())
            .unwrap()
            .incident;
    }
    assert_eq!(inc.updates.len(), KEPT_UPDATES);
    assert_eq!(
        inc.updates.last().unwrap().text,
        format!("update {}", KEPT_UPDATES + 4)
    );
    assert_eq!(inc.timeline_len, before + KEPT_UPDATES as u64 + 5);

    assert!(inc.set_public(false, by.clone(), t0()).is_err());
    let c = inc.set_public(true, by.clone(), t0()).unwrap();
    assert!(c.incident.public);
    assert_eq!(
        c.entries[0].event,
        TimelineEvent::Visibility { public: true }
    );
    assert!(c.incident.set_public(true, by, t0()).is_err());
}
