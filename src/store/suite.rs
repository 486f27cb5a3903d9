//! The behaviour every [`Store`] backend must have.

use super::{OpenFilter, Store, StoreError, StoredEvent};
use crate::incident::{AlertAction, AlertEvent};
use crate::incident::{Incident, IncidentId, Status};
use chrono::{DateTime, Utc};

/// A trigger event with dedup key `key`.
pub(crate) fn event(key: &str) -> AlertEvent {
    AlertEvent {
        dedup_key: key.into(),
        fingerprint: Some(key.into()),
        action: AlertAction::Trigger,
        summary: format!("summary {key}"),
        incident_title: None,
        source: "suite".into(),
        severity: None,
        labels: Default::default(),
        details: serde_json::Value::Null,
        links: vec![],
        left_out: None,
        expires_at: None,
    }
}

/// Incident `id` opened on service `api` by a trigger for dedup key `key`.
pub(crate) fn opening(id: IncidentId, key: &str) -> crate::incident::Change {
    Incident::open(id, "api", "int", &event(key), now())
}

/// A fixed time.
pub(crate) fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-29T10:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

/// Runs the shared suite against `store`, which must be empty.
pub fn run(store: &dyn Store) {
    // Open one incident with its timeline, open index and raw event.
    let mut opened = None;
    store
        .transact(&mut |tx| {
            let id = tx.next_incident_id()?;
            let change = opening(id, "k1");
            tx.put_incident(&change.incident)?;
            for e in &change.entries {
                tx.append_timeline(id, e)?;
            }
            tx.set_open_incident("api", "k1", Some(id))?;
            tx.record_event(&StoredEvent {
                received_at: now(),
                integration: "int".into(),
                incident: Some(id),
                event: event("k1"),
            })?;
            opened = Some(change.incident.clone());
            Ok(())
        })
        .unwrap();
    let opened = opened.unwrap();
    assert_eq!(opened.id, IncidentId(1));
    assert_eq!(store.incident(IncidentId(1)).unwrap(), Some(opened.clone()));
    assert_eq!(store.timeline(IncidentId(1)).unwrap().len(), 2);
    assert_eq!(store.event_count().unwrap(), 1);

    // An aborted transaction writes nothing, not even what it did before failing.
    let err = store.transact(&mut |tx| {
        let id = tx.next_incident_id()?;
        let change = opening(id, "k2");
        tx.put_incident(&change.incident)?;
        tx.set_open_incident("api", "k2", Some(id))?;
        Err(StoreError::Aborted("refused".into()))
    });
    assert!(matches!(err, Err(StoreError::Aborted(_))));
    assert_eq!(store.incident(IncidentId(2)).unwrap(), None);
    let mut open = None;
    store
        .transact(&mut |tx| {
            open = Some((
                tx.open_incident("api", "k1")?,
                tx.open_incident("api", "k2")?,
            ));
            Ok(())
        })
        .unwrap();
    assert_eq!(open, Some((Some(IncidentId(1)), None)));

    // The aborted transaction's number is never seen: sled hands it out
    // again, PostgreSQL's sequence skips it; neither reuses a stored one.
    let mut next = None;
    store
        .transact(&mut |tx| {
            next = Some(tx.next_incident_id()?);
            let change = opening(next.unwrap(), "k3");
            let resolved = change
                .incident
                .resolve(crate::incident::Actor::System, None, now())
                .unwrap();
            tx.put_incident(&resolved.incident)?;
            Ok(())
        })
        .unwrap();
    let second = next.unwrap();
    assert!(second.0 >= 2, "{second} was handed out twice");
    assert_eq!(store.incident(second).unwrap().unwrap().id, second);

    // Listing: newest first, filtered by status.
    let ids = |v: Vec<Incident>| v.iter().map(|i| i.id.0).collect::<Vec<_>>();
    assert_eq!(
        ids(store.incidents(None, None, 10).unwrap()),
        vec![second.0, 1]
    );
    let resolved = store.incidents(Some(Status::Resolved), None, 10).unwrap();
    assert_eq!(ids(resolved), vec![second.0]);
    let triggered = store.incidents(Some(Status::Triggered), None, 10).unwrap();
    assert_eq!(ids(triggered), vec![1]);
    assert!(
        store
            .incidents(Some(Status::Acknowledged), None, 10)
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.incidents(None, None, 1).unwrap().len(), 1);
    // Open incidents by service and severity, from the index.
    let open = |f: OpenFilter| ids(store.open_incidents(&f, None, 10).unwrap());
    assert_eq!(open(OpenFilter::default()), vec![1]);
    let first = store.incident(IncidentId(1)).unwrap().unwrap();
    assert_eq!(
        open(OpenFilter {
            service: Some(first.service.clone()),
            severity: Some(first.severity),
            ..OpenFilter::default()
        }),
        vec![1]
    );
    assert!(
        open(OpenFilter {
            service: Some("elsewhere".into()),
            ..OpenFilter::default()
        })
        .is_empty()
    );
    assert!(
        open(OpenFilter {
            status: Some(Status::Acknowledged),
            ..OpenFilter::default()
        })
        .is_empty()
    );
    // Pages of history: older than the cursor.
    let before = Some(second);
    assert_eq!(ids(store.incidents(None, before, 10).unwrap()), vec![1]);
    let before_one = Some(IncidentId(1));
    assert!(store.incidents(None, before_one, 10).unwrap().is_empty());
    assert!(
        store
            .incidents(Some(Status::Resolved), before, 10)
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        ids(store
            .incidents(Some(Status::Triggered), before, 10)
            .unwrap()),
        vec![1]
    );
    assert_eq!(store.incident_count().unwrap(), 2);
    // The open incidents, counted by severity and status as they change.
    let severity = opened.severity;
    assert_eq!(
        store.gauges().unwrap().open,
        vec![(severity, Status::Triggered, 1)]
    );
    store
        .transact(&mut |tx| {
            let mut inc = tx.incident(IncidentId(1))?.unwrap();
            inc.status = Status::Acknowledged;
            tx.put_incident(&inc)?;
            // Written twice in one transaction: counted once.
            tx.put_incident(&inc)
        })
        .unwrap();
    assert_eq!(
        store.gauges().unwrap().open,
        vec![(severity, Status::Acknowledged, 1)]
    );
    let acked = store
        .incidents(Some(Status::Acknowledged), None, 10)
        .unwrap();
    assert_eq!(ids(acked), vec![1]);
    assert!(
        store
            .incidents(Some(Status::Triggered), None, 10)
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.incident_count().unwrap(), 2);
    // An aborted transaction moves no count.
    let _ = store.transact(&mut |tx| {
        let mut inc = tx.incident(IncidentId(1))?.unwrap();
        inc.status = Status::Resolved;
        tx.put_incident(&inc)?;
        Err(StoreError::Aborted("refused".into()))
    });
    assert_eq!(store.gauges().unwrap().open.len(), 1);

    // Unmarking the open index.
    store
        .transact(&mut |tx| tx.set_open_incident("api", "k1", None))
        .unwrap();
    let mut after = Some(IncidentId(99));
    store
        .transact(&mut |tx| {
            after = tx.open_incident("api", "k1")?;
            Ok(())
        })
        .unwrap();
    assert_eq!(after, None);
    store.check_writable().unwrap();

    // Timers: ordered by due time, deleted in transactions.
    use crate::escalation::{Timer, TimerKind};
    let late = Timer {
        due: now() + chrono::Duration::minutes(10),
        incident: IncidentId(1),
        generation: 0,
        kind: TimerKind::Escalate { step: 1, round: 0 },
    };
    let early = Timer {
        due: now() + chrono::Duration::minutes(5),
        incident: IncidentId(2),
        generation: 0,
        kind: TimerKind::Unsnooze,
    };
    store
        .transact(&mut |tx| {
            tx.put_timer(&late)?;
            tx.put_timer(&early)
        })
        .unwrap();
    assert_eq!(store.next_timer().unwrap(), Some(early));
    assert_eq!(store.timer_count().unwrap(), 2);
    // Writing a timer again does not count it twice.
    store.transact(&mut |tx| tx.put_timer(&early)).unwrap();
    assert_eq!(store.gauges().unwrap().timers_pending, 2);
    // Due ones only, earliest first, at most `limit`.
    assert!(store.due_timers(now(), 10).unwrap().is_empty());
    let at = now() + chrono::Duration::minutes(7);
    assert_eq!(store.due_timers(at, 10).unwrap(), vec![early]);
    let at = now() + chrono::Duration::minutes(10);
    assert_eq!(store.due_timers(at, 10).unwrap(), vec![early, late]);
    assert_eq!(store.due_timers(at, 1).unwrap(), vec![early]);
    // Heartbeat timers, picked out from the others whenever due.
    let beat = Timer {
        due: now() + chrono::Duration::days(3),
        incident: IncidentId(0),
        generation: 0,
        kind: TimerKind::Heartbeat {
            heartbeat: 7,
            expected: now(),
        },
    };
    assert!(store.heartbeat_timers().unwrap().is_empty());
    store.transact(&mut |tx| tx.put_timer(&beat)).unwrap();
    assert_eq!(store.heartbeat_timers().unwrap(), vec![beat]);
    store
        .transact(&mut |tx| tx.delete_timer(&beat).map(|_| ()))
        .unwrap();
    assert!(store.heartbeat_timers().unwrap().is_empty());
    let mut deleted = (false, false);
    store
        .transact(&mut |tx| {
            deleted = (tx.delete_timer(&early)?, tx.delete_timer(&early)?);
            Ok(())
        })
        .unwrap();
    assert_eq!(deleted, (true, false));
    assert_eq!(store.next_timer().unwrap(), Some(late));
    assert_eq!(store.gauges().unwrap().timers_pending, 1);

    // Outbox entries: queued when pending, read back by key.
    use crate::notify::{DeliveryState, OutboxEntry};
    let entry = page_entry();
    store.transact(&mut |tx| tx.put_outbox(&entry)).unwrap();
    assert_eq!(store.outbox_entry(&entry.key).unwrap(), Some(entry.clone()));
    assert_eq!(store.outbox_entry("INC-9/none").unwrap(), None);
    assert_eq!(store.due_outbox(now(), 10).unwrap(), vec![entry.clone()]);
    assert_eq!(store.outbox_depth().unwrap(), 1);
    assert_eq!(store.gauges().unwrap().outbox_next_due, Some(now()));
    // Delivered: out of the queue and the depth.
    let delivered = OutboxEntry {
        state: DeliveryState::Delivered { at: now() },
        ..entry.clone()
    };
    store.transact(&mut |tx| tx.put_outbox(&delivered)).unwrap();
    let g = store.gauges().unwrap();
    assert_eq!((g.outbox_depth, g.outbox_next_due), (0, None));
    store.transact(&mut |tx| tx.put_outbox(&entry)).unwrap();
    assert_eq!(store.outbox_depth().unwrap(), 1);

    // Summaries, channels and runtime overrides.
    assert_eq!(store.summary(IncidentId(1)).unwrap(), None);
    store.put_summary(IncidentId(1), "# INC-1").unwrap();
    assert_eq!(
        store.summary(IncidentId(1)).unwrap().as_deref(),
        Some("# INC-1")
    );
    store
        .transact(&mut |tx| tx.set_channel("slack", "C1", IncidentId(1)))
        .unwrap();
    assert_eq!(
        store.incident_by_channel("slack", "C1").unwrap(),
        Some(IncidentId(1))
    );
    assert_eq!(store.incident_by_channel("discord", "C1").unwrap(), None);
    let o = store
        .add_override(super::StoredOverride {
            id: 0,
            schedule: "primary".into(),
            user: "carol".into(),
            start: now(),
            end: now() + chrono::Duration::hours(1),
            created_by: "suite".into(),
        })
        .unwrap();
    assert_eq!(store.overrides("primary").unwrap(), vec![o.clone()]);
    assert!(store.overrides("other").unwrap().is_empty());
    assert!(store.delete_override("primary", o.id).unwrap());
    assert!(!store.delete_override("primary", o.id).unwrap());

    // API tokens: found by id, replaced by id (a revocation), listed.
    use crate::access::{ApiToken, Scope};
    assert!(store.tokens().unwrap().is_empty());
    let (mut alice, _) = ApiToken::generate("alice", Scope::Read, "suite", now());
    let (bob, _) = ApiToken::generate("bob", Scope::Admin, "suite", now());
    store.put_token(&alice).unwrap();
    store.put_token(&bob).unwrap();
    assert_eq!(store.token(&alice.id).unwrap(), Some(alice.clone()));
    assert_eq!(store.token("000000000000").unwrap(), None);
    alice.revoked_at = Some(now());
    store.put_token(&alice).unwrap();
    assert_eq!(
        store.token(&alice.id).unwrap().unwrap().revoked_at,
        Some(now())
    );
    let mut all = store.tokens().unwrap();
    all.sort_by(|a, b| a.user.cmp(&b.user));
    assert_eq!(all, vec![alice.clone(), bob.clone()]);

    // A sign-in link is used once: update_token writes what `f` returns,
    // and nothing when it returns nothing.
    let min = chrono::Duration::minutes;
    let (link, code) =
        ApiToken::sign_in_link("carol", Scope::Write, "slack", now(), now() + min(10));
    store.put_token(&link).unwrap();
    let (_, secret) = crate::access::split_token(&code).unwrap();
    let mut redeem = |t: &ApiToken| t.redeem(secret, now(), now() + min(60)).ok();
    let used = store.update_token(&link.id, &mut redeem).unwrap().unwrap();
    assert!(used.sign_in.as_ref().unwrap().used_at.is_some());
    assert_eq!(store.token(&link.id).unwrap(), Some(used.clone()));
    assert_eq!(store.update_token(&link.id, &mut redeem).unwrap(), None);
    assert_eq!(store.token(&link.id).unwrap(), Some(used));
    assert_eq!(
        store
            .update_token("000000000000", &mut |t| Some(t.clone()))
            .unwrap(),
        None
    );

    maintenance_windows(store);
}

/// Runtime maintenance windows: numbered in order, read back in the
/// transaction that wrote them and after it, replaced by id, removed.
fn maintenance_windows(store: &dyn Store) {
    use crate::maintenance::StoredWindow;
    assert!(store.maintenance_windows().unwrap().is_empty());
    let window = |id: u64, name: &str| StoredWindow {
        id,
        name: name.into(),
        services: vec!["api".into()],
        matchers: vec!["env=prod".into()],
        reason: Some("upgrade".into()),
        start: now(),
        end: now() + chrono::Duration::hours(2),
        created_by: "suite".into(),
        created_at: now(),
        ended_by: None,
    };
    let mut ids = Vec::new();
    store
        .transact(&mut |tx| {
            ids.clear();
            for name in ["a", "b"] {
                let id = tx.next_maintenance_id()?;
                tx.put_maintenance_window(&window(id, name))?;
                ids.push(id);
            }
            // Seen within the transaction that wrote it (intake reads it so).
            assert_eq!(tx.maintenance_windows()?.len(), 2);
            assert_eq!(tx.maintenance_window(ids[1])?.unwrap().name, "b");
            Ok(())
        })
        .unwrap();
    assert_eq!(ids, [1, 2]);
    let mut ended = window(1, "a");
    ended.end = now();
    ended.ended_by = Some("bob".into());
    store
        .transact(&mut |tx| tx.put_maintenance_window(&ended))
        .unwrap();
    assert_eq!(
        store.maintenance_windows().unwrap(),
        vec![ended.clone(), window(2, "b")]
    );
    let mut removed = (false, false);
    store
        .transact(&mut |tx| {
            removed = (
                tx.delete_maintenance_window(2)?,
                tx.delete_maintenance_window(2)?,
            );
            Ok(())
        })
        .unwrap();
    assert_eq!(removed, (true, false));
    assert_eq!(store.maintenance_windows().unwrap(), vec![ended]);
    let mut next = 0;
    store
        .transact(&mut |tx| {
            next = tx.next_maintenance_id()?;
            Ok(())
        })
        .unwrap();
    assert_eq!(next, 3, "ids are never reused");
}

/// A fresh, empty PostgreSQL database for one test, made on the cluster at
/// `TOCSIN_TEST_POSTGRES_URL`; `None` (with a notice) when that is unset,
/// except in CI (`CI=true`), where a PostgreSQL test that cannot run fails.
pub(crate) fn postgres_database(test: &str) -> Option<String> {
    let Ok(admin) = std::env::var("TOCSIN_TEST_POSTGRES_URL") else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "TOCSIN_TEST_POSTGRES_URL is unset in CI: {test} needs PostgreSQL (.ci/run starts one)"
        );
        eprintln!(
            "SKIPPED {test}: set TOCSIN_TEST_POSTGRES_URL (tests/interop/postgres-cluster.sh start DIR prints one)"
        );
        return None;
    };
    let name = format!("tocsin_{}_{}", test, uuid::Uuid::new_v4().simple())
        .chars()
        .take(63)
        .collect::<String>();
    let mut client = postgres::Client::connect(&admin, postgres::NoTls)
        .unwrap_or_else(|e| panic!("connecting to TOCSIN_TEST_POSTGRES_URL: {e}"));
    client
        .batch_execute(&format!("CREATE DATABASE \"{name}\""))
        .unwrap();
    let mut url = url::Url::parse(&admin).expect("TOCSIN_TEST_POSTGRES_URL is a URL");
    url.set_path(&name);
    Some(url.to_string())
}

/// A pending page for INC-1, due at [`now`].
pub(crate) fn page_entry() -> crate::notify::OutboxEntry {
    use crate::config::ContactKind;
    use crate::escalation::Recipient;
    use crate::notify::{DeliveryState, Job, OutboxEntry, PageContent};
    OutboxEntry {
        generation: None,
        incident_uid: String::new(),
        key: "INC-1/g0/r0/s0/user:alice/m0".into(),
        job: Job::Page,
        incident: IncidentId(1),
        recipient: Recipient::User("alice".into()),
        method: ContactKind::Webhook,
        method_index: 0,
        page: PageContent {
            incident: IncidentId(1),
            title: "t".into(),
            severity: crate::incident::Severity::Sev1,
            service: "api".into(),
            step: 1,
            round: 1,
        },
        created_at: now(),
        first_due: now(),
        due: now(),
        attempts: 0,
        last_error: None,
        state: DeliveryState::Pending,
    }
}
