//! Escalation steps, timers and outbox bookkeeping, inside store
//! transactions. The decisions come from [`crate::escalation`] and
//! [`crate::notify`]; this file writes them.

use super::writer::Priority;
use super::{ChangeError, Service, ServiceError};
use crate::escalation::{EscalationState, Timer, TimerKind, resolve_targets};
use crate::incident::{Actor, Change, Incident, IncidentError, Status, TimelineEvent};
use crate::notify::{AfterFailure, DeliveryError, DeliveryState, OutboxEntry, after_failure};
use crate::store::{StoreError, Tx};
use chrono::{DateTime, Utc};
use tracing::{error, info, info_span, warn};

/// Deletes the incident's pending timer, if any: acknowledged, snoozed or
/// resolved incidents page no more.
pub(super) fn stop_escalation(tx: &mut dyn Tx, incident: &mut Incident) -> Result<(), StoreError> {
    if let Some(state) = incident.escalation.as_mut()
        && let Some(timer) = state.timer.take()
    {
        tx.delete_timer(&timer)?;
    }
    Ok(())
}

/// Whether a page should still go out: its incident is triggered and still
/// in the escalation run (generation) that queued it; else why not.
fn page_wanted(entry: &OutboxEntry, incident: Option<&Incident>) -> Result<(), String> {
    let Some(inc) = incident else {
        return Err("incident does not exist".into());
    };
    // A page without a generation was asked for by a person (`/page` in
    // the incident's channel): it goes out unless the incident is over.
    if entry.generation.is_none() {
        return match inc.status {
            Status::Resolved => Err("incident resolved before the page was sent".into()),
            _ => Ok(()),
        };
    }
    if inc.status != Status::Triggered {
        return Err(format!("incident {} before the page was sent", inc.status));
    }
    let current = inc.escalation.as_ref().map(|e| e.generation);
    match (entry.generation, current) {
        (Some(g), Some(now)) if g != now => Err(format!(
            "escalation run {g} was stopped before the page was due; run {now} pages afresh"
        )),
        _ => Ok(()),
    }
}

/// Keeps the incident's expiry timer on the earliest `expires_at` of its
/// firing alerts (none once it is resolved), in the same transaction as the
/// change that moved it.
pub(super) fn sync_expiry(tx: &mut dyn Tx, incident: &mut Incident) -> Result<(), StoreError> {
    let want = incident.next_expiry();
    if incident.expiry.map(|t| t.due) == want {
        return Ok(());
    }
    if let Some(old) = incident.expiry.take() {
        tx.delete_timer(&old)?;
    }
    if let Some(due) = want {
        let timer = Timer {
            due,
            incident: incident.id,
            generation: 0,
            kind: TimerKind::Expire,
        };
        tx.put_timer(&timer)?;
        incident.expiry = Some(timer);
    }
    Ok(())
}

impl Service {
    /// Resolves the alerts of `inc` whose end time passed (the expiry timer
    /// fired), and the incident with them if they were the last.
    fn fire_expiry(
        &self,
        tx: &mut dyn Tx,
        inc: Incident,
        timer: &Timer,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if inc.expiry.as_ref() != Some(timer) {
            return Ok(()); // superseded
        }
        let mut change = inc.expire(now).unwrap_or_else(|| Change {
            incident: inc.clone(),
            entries: Vec::new(),
        });
        change.incident.expiry = None;
        if !change.incident.status.is_open() {
            info!("Resolved: every alert's end time passed");
            stop_escalation(tx, &mut change.incident)?;
        }
        sync_expiry(tx, &mut change.incident)?;
        self.write_change(tx, &change)
    }

    /// A flapping (or watched) incident's alert did not change for its
    /// window: still firing, escalation starts again from its first step
    /// (unless someone has it); resolved, the incident resolves.
    fn fire_flap_settle(
        &self,
        tx: &mut dyn Tx,
        inc: Incident,
        timer: &Timer,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if inc.settle_due() != Some(timer.due) {
            return Ok(()); // superseded
        }
        let Some((mut change, how)) = inc.settle_flapping(now) else {
            return Ok(());
        };
        match how {
            crate::incident::Settled::Firing { repage: true } => {
                info!("Flapping settled firing; paging again");
                self.start_escalation(tx, &mut change, now)?;
            }
            crate::incident::Settled::Firing { repage: false } => {
                info!("Flapping settled firing; already acknowledged");
            }
            crate::incident::Settled::Resolved => {
                info!("Flapping settled resolved; resolving");
                stop_escalation(tx, &mut change.incident)?;
                sync_expiry(tx, &mut change.incident)?;
            }
        }
        self.write_change(tx, &change)
    }

    /// Starts the service's escalation policy on a new incident: the first
    /// step runs now, in the same transaction that opens the incident.
    pub(super) fn start_escalation(
        &self,
        tx: &mut dyn Tx,
        change: &mut Change,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let Some(policy) = self.directory.policy_for_incident(&change.incident) else {
            return Ok(());
        };
        let generation = change
            .incident
            .escalation
            .as_ref()
            .map(|e| e.generation + 1)
            .unwrap_or(0);
        change.incident.escalation = Some(EscalationState {
            policy: policy.name.clone(),
            generation,
            step: 0,
            round: 0,
            timer: None,
            exhausted: false,
        });
        self.run_step(tx, change, 0, 0, now, Actor::System)
    }

    /// Runs one step: resolves its targets, queues a page per recipient and
    /// contact method, and sets the timer for what follows.
    fn run_step(
        &self,
        tx: &mut dyn Tx,
        change: &mut Change,
        step: usize,
        round: u32,
        now: DateTime<Utc>,
        actor: Actor,
    ) -> Result<(), StoreError> {
        let Some(state) = change.incident.escalation.clone() else {
            return Ok(());
        };
        let Some(policy) = self.directory.policy(&state.policy) else {
            // The policy left the config since the incident opened.
            warn!(policy = %state.policy, "Escalation policy no longer exists; stopping escalation");
            return Ok(());
        };
        if step >= policy.steps.len() {
            return Ok(());
        }
        let run = policy.run_step(step, round, now);
        let mut on_call = |schedule: &str| self.directory.on_call(schedule, now).map(|o| o.user);
        let (recipients, uncovered) = resolve_targets(&run.targets, &mut on_call);
        let inc = &mut change.incident;
        let delivered = self.queue_pages(
            tx,
            inc,
            &recipients,
            Some(state.generation),
            round,
            step,
            now,
        )?;
        inc.record(
            &mut change.entries,
            now,
            actor,
            TimelineEvent::EscalationStep {
                policy: policy.name.clone(),
                step: step + 1,
                round: round + 1,
                notified: recipients.iter().map(|r| r.to_string()).collect(),
            },
        );
        for schedule in uncovered {
            inc.record(
                &mut change.entries,
                now,
                Actor::System,
                TimelineEvent::NobodyOnCall { schedule },
            );
        }
        super::chat::record_delivered(inc, &mut change.entries, now, delivered);
        stop_escalation(tx, inc)?;
        let timer = Timer::for_next(inc.id, state.generation, run.next);
        tx.put_timer(&timer)?;
        let st = inc.escalation.as_mut().expect("set above");
        st.step = step;
        st.round = round;
        st.timer = Some(timer);
        Ok(())
    }

    /// Sets the timer that ends a snooze (replacing any escalation timer).
    pub(super) fn schedule_unsnooze(
        &self,
        tx: &mut dyn Tx,
        change: &mut Change,
        until: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let inc = &mut change.incident;
        stop_escalation(tx, inc)?;
        let state = inc.escalation.get_or_insert_with(|| EscalationState {
            policy: String::new(),
            generation: 0,
            step: 0,
            round: 0,
            timer: None,
            exhausted: false,
        });
        let timer = Timer {
            due: until,
            incident: inc.id,
            generation: state.generation,
            kind: TimerKind::Unsnooze,
        };
        tx.put_timer(&timer)?;
        state.timer = Some(timer);
        Ok(())
    }

    /// A manual escalation: the step after the current one, now.
    pub(super) fn escalate_now(
        &self,
        tx: &mut dyn Tx,
        current: &Incident,
        by: Actor,
        now: DateTime<Utc>,
    ) -> Result<Change, ChangeError> {
        let inc = current.reopen_for_escalation(now)?;
        let mut change = Change {
            incident: inc,
            entries: Vec::new(),
        };
        let Some(state) = change
            .incident
            .escalation
            .clone()
            .filter(|s| !s.policy.is_empty())
        else {
            return Err(ChangeError::Refused(IncidentError::NoEscalationPolicy(
                current.id,
            )));
        };
        let policy = self
            .directory
            .policy(&state.policy)
            .ok_or(IncidentError::NoEscalationPolicy(current.id))?;
        let (step, round) = policy
            .following(state.step, state.round)
            .ok_or(IncidentError::NoFurtherStep(current.id))?;
        self.run_step(tx, &mut change, step, round, now, by)?;
        Ok(change)
    }

    /// Fires every timer due at `now`; returns how many fired. Timers fire
    /// in batches, each batch one transaction and one flush, after which the
    /// outbox starts paging and the task yields: a backlog after downtime
    /// neither delays the first page nor holds a runtime thread. A batch
    /// stops after 128 timers or 2 ms, whichever comes first, because new
    /// alerts wait for it at the writer. Each call records the scheduler's
    /// heartbeat for `/readyz`.
    pub async fn fire_due_timers(&self, now: DateTime<Utc>) -> Result<usize, ServiceError> {
        const BATCH: usize = 128;
        const BUDGET: std::time::Duration = std::time::Duration::from_millis(2);
        let mut fired = 0;
        loop {
            // A long backlog takes a while: each batch runs at the time it
            // actually runs, so the timeline and the lateness metric say
            // when each step really happened.
            let now = self.clock.now().max(now);
            // Still alive for /readyz, however long the backlog.
            self.wakers.scheduler_beat.store(
                now.timestamp_millis().max(1),
                std::sync::atomic::Ordering::Relaxed,
            );
            let due = self.store.due_timers(now, BATCH)?;
            if due.is_empty() {
                break;
            }
            let svc = self.clone();
            fired += self
                .write(Priority::Background, move |tx| {
                    let started = std::time::Instant::now();
                    let mut n = 0;
                    for timer in &due {
                        if n > 0 && started.elapsed() > BUDGET {
                            break; // the rest go in the next batch
                        }
                        let span = info_span!("incident", incident = %timer.incident);
                        let _enter = span.enter();
                        svc.fire_timer(tx, timer, now)?;
                        n += 1;
                    }
                    Ok(n)
                })
                .await?;
            tokio::task::yield_now().await;
        }
        Ok(fired)
    }

    fn fire_timer(
        &self,
        tx: &mut dyn Tx,
        timer: &Timer,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if !tx.delete_timer(timer)? {
            return Ok(());
        }
        crate::metrics::METRICS
            .timer_lateness
            .observe(((now - timer.due).num_milliseconds().max(0) as f64) / 1000.0);
        if let TimerKind::Heartbeat { .. } = timer.kind {
            return self.fire_heartbeat(tx, timer, now);
        }
        let Some(inc) = tx.incident(timer.incident)? else {
            return Ok(());
        };
        if timer.kind == TimerKind::Expire {
            return self.fire_expiry(tx, inc, timer, now);
        }
        if timer.kind == TimerKind::FlapSettle {
            return self.fire_flap_settle(tx, inc, timer, now);
        }
        if timer.kind == TimerKind::MaintenanceEnd {
            return self.fire_maintenance_end(tx, inc, timer, now);
        }
        let Some(state) = inc.escalation.clone() else {
            return Ok(());
        };
        if state.timer.as_ref() != Some(timer) {
            return Ok(()); // superseded
        }
        let mut change = Change {
            incident: inc,
            entries: Vec::new(),
        };
        change.incident.escalation.as_mut().expect("checked").timer = None;
        match timer.kind {
            TimerKind::Escalate { step, round } => {
                if change.incident.status == Status::Triggered {
                    info!(step = step + 1, round = round + 1, "Escalating");
                    self.run_step(tx, &mut change, step as usize, round, now, Actor::System)?;
                }
            }
            TimerKind::Exhausted => {
                if change.incident.status == Status::Triggered {
                    error!(policy = %state.policy, "Escalation exhausted: nobody acknowledged");
                    let st = change.incident.escalation.as_mut().expect("checked");
                    st.exhausted = true;
                    change.incident.record(
                        &mut change.entries,
                        now,
                        Actor::System,
                        TimelineEvent::EscalationExhausted {
                            policy: state.policy.clone(),
                        },
                    );
                }
            }
            TimerKind::Expire
            | TimerKind::Heartbeat { .. }
            | TimerKind::FlapSettle
            | TimerKind::MaintenanceEnd => {
                unreachable!("handled above")
            }
            TimerKind::Unsnooze => {
                if let Some(mut woken) = change.incident.unsnooze(now) {
                    info!("Snooze ended; escalating again");
                    self.start_escalation(tx, &mut woken, now)?;
                    change = woken;
                }
            }
        }
        self.write_change(tx, &change)
    }

    /// Re-reads a due outbox entry before sending it: `None` if it is no
    /// longer pending or due, or if its incident is no longer triggered (the
    /// entry is then cancelled).
    /// The entry comes leased to this process
    /// ([`crate::store::Store::lease_outbox`]), so
    /// replicas sharing a store do not both send it.
    pub async fn claim_delivery(
        &self,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<OutboxEntry>, ServiceError> {
        let Some(entry) = self.claim_unleased(key, now).await? else {
            return Ok(None);
        };
        // Long enough for every attempt's request to finish or time out.
        let lease = (self.directory.config.notify.request_timeout * 3)
            .max(std::time::Duration::from_secs(30));
        let until = now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX);
        // Read like the checks before it (PostgreSQL's client moves itself
        // off the runtime's thread; sled's answer needs no I/O).
        let leased = self.store.lease_outbox(&entry.key, now, until)?;
        Ok(leased.then_some(entry))
    }

    async fn claim_unleased(
        &self,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<OutboxEntry>, ServiceError> {
        // Plain reads, no transaction: an acknowledgement can land just
        // after this check whatever we do, and the receiver then gets one
        // page too many either way. Cancelling is a write, and re-checks.
        let Some(entry) = self.store.outbox_entry(key)? else {
            return Ok(None);
        };
        if entry.state != DeliveryState::Pending || entry.due > now {
            return Ok(None);
        }
        let incident = self.store.incident(entry.incident)?;
        // Chat jobs always run; pages only while nobody has taken it, and
        // only for the escalation run that queued them.
        if entry.job != crate::notify::Job::Page {
            return self.claim_in_order(entry, now).await;
        }
        if page_wanted(&entry, incident.as_ref()).is_ok() {
            return Ok(Some(entry));
        }
        let key = key.to_string();
        self.write(Priority::Background, move |tx| {
            let Some(mut entry) = tx.outbox_entry(&key)? else {
                return Ok(());
            };
            if entry.state != DeliveryState::Pending {
                return Ok(());
            }
            let reason = match page_wanted(&entry, tx.incident(entry.incident)?.as_ref()) {
                Ok(()) => return Ok(()), // triggered again, same run: send it later
                Err(reason) => reason,
            };
            entry.state = DeliveryState::Cancelled { at: now, reason };
            tx.put_outbox(&entry)
        })
        .await?;
        Ok(None)
    }

    /// Claims a chat job; a post in an incident channel waits while an
    /// earlier post for the same channel is still pending (retrying after a
    /// failure, or in flight), so the channel reads in the order things
    /// happened. It is put off until the earlier one's next attempt (at
    /// least a moment), then checked again.
    async fn claim_in_order(
        &self,
        entry: OutboxEntry,
        now: DateTime<Utc>,
    ) -> Result<Option<OutboxEntry>, ServiceError> {
        let Some(order) = post_order(&entry) else {
            return Ok(Some(entry));
        };
        let platform = entry.chat_platform().map(str::to_string);
        let earlier = self
            .store
            .outbox_for(entry.incident)?
            .into_iter()
            .filter(|e| {
                e.key != entry.key
                    && e.state == DeliveryState::Pending
                    && e.chat_platform().map(str::to_string) == platform
            })
            .filter(|e| post_order(e).is_some_and(|o| o < order))
            .map(|e| e.due)
            .min();
        let Some(blocker_due) = earlier else {
            return Ok(Some(entry));
        };
        let until = blocker_due.max(now + chrono::Duration::milliseconds(250));
        let key = entry.key.clone();
        self.write(Priority::Background, move |tx| {
            if let Some(mut e) = tx.outbox_entry(&key)?
                && e.state == DeliveryState::Pending
                && e.due < until
            {
                e.due = until;
                tx.put_outbox(&e)?;
            }
            Ok(())
        })
        .await?;
        Ok(None)
    }

    /// Records a delivery attempt: delivered, retry later, or give up (and
    /// bring the recipient's next contact method forward).
    pub async fn record_delivery(
        &self,
        key: &str,
        result: Result<(), DeliveryError>,
        now: DateTime<Utc>,
        jitter: f64,
    ) -> Result<(), ServiceError> {
        let svc = self.clone();
        let key = key.to_string();
        self.write(Priority::Background, move |tx| {
            let notify = &svc.directory.config.notify;
            let Some(mut entry) = tx.outbox_entry(&key)? else {
                return Ok(());
            };
            if entry.state != DeliveryState::Pending {
                return Ok(());
            }
            let Some(inc) = tx.incident(entry.incident)? else {
                return Ok(());
            };
            let mut change = Change {
                incident: inc,
                entries: Vec::new(),
            };
            entry.attempts += 1;
            let recipient = entry.recipient.to_string();
            let method = entry.method.as_str().to_string();
            count_delivery(&entry, &result);
            match &result {
                Ok(()) if entry.job != crate::notify::Job::Page => {
                    // Channel upkeep is not worth a timeline line each time.
                    entry.state = DeliveryState::Delivered { at: now };
                    entry.last_error = None;
                }
                Ok(()) => {
                    entry.state = DeliveryState::Delivered { at: now };
                    entry.last_error = None;
                    change.incident.record(
                        &mut change.entries,
                        now,
                        Actor::System,
                        TimelineEvent::Paged {
                            recipient,
                            method,
                            attempts: entry.attempts,
                        },
                    );
                }
                Err(err) => {
                    entry.last_error = Some(err.message.clone());
                    match after_failure(&entry, err, now, notify, jitter) {
                        AfterFailure::RetryAt(at) => {
                            entry.due = at;
                            change.incident.record(
                                &mut change.entries,
                                now,
                                Actor::System,
                                TimelineEvent::DeliveryRetry {
                                    recipient,
                                    method,
                                    attempt: entry.attempts,
                                    error: err.message.clone(),
                                    retry_at: at,
                                },
                            );
                        }
                        AfterFailure::GiveUp => {
                            if entry.job == crate::notify::Job::Page {
                                crate::metrics::METRICS
                                    .pages_failed
                                    .get_or_create(&crate::metrics::labels([("method", &method)]))
                                    .inc();
                            }
                            error!(incident = %entry.incident, recipient = %entry.recipient, method = %method, error = %err.message, "Gave up on a page");
                            entry.state = DeliveryState::Failed { at: now };
                            change.incident.record(
                                &mut change.entries,
                                now,
                                Actor::System,
                                TimelineEvent::DeliveryFailed {
                                    recipient,
                                    method,
                                    attempts: entry.attempts,
                                    error: err.message.clone(),
                                },
                            );
                            bring_next_method_forward(tx, &entry, now)?;
                        }
                    }
                }
            }
            tx.put_outbox(&entry)?;
            if matches!(entry.job, crate::notify::Job::AuditHead { .. }) {
                // A timeline line would move the head it carries: the
                // outcome goes to the log and the notifications API.
                if let Err(e) = &result {
                    warn!(incident = %entry.incident, attempts = entry.attempts, error = %e.message, "Audit head webhook failed");
                }
                return Ok(());
            }
            svc.write_change(tx, &change)
        })
        .await?;
        Ok(())
    }
}

/// Counts a delivery attempt: pages by method, chat jobs by platform and job.
pub(super) fn count_delivery(entry: &OutboxEntry, result: &Result<(), DeliveryError>) {
    use crate::metrics::{METRICS, labels};
    let method = entry.method.as_str();
    if entry.job == crate::notify::Job::Page {
        match result {
            Ok(()) => METRICS
                .pages_sent
                .get_or_create(&labels([("method", method)]))
                .inc(),
            Err(_) => METRICS
                .deliveries_retried
                .get_or_create(&labels([("method", method)]))
                .inc(),
        };
    }
    if let Some(platform) = entry.chat_platform() {
        let job = serde_json::to_value(&entry.job)
            .ok()
            .and_then(|v| v["job"].as_str().map(str::to_string))
            .unwrap_or_else(|| "page".into());
        let outcome = if result.is_ok() { "ok" } else { "error" };
        METRICS
            .chat_calls
            .get_or_create(&labels([
                ("platform", platform),
                ("job", &job),
                ("outcome", outcome),
            ]))
            .inc();
        if let Err(e) = result
            && e.retry_after.is_some()
            && e.retryable
        {
            METRICS
                .chat_rate_limited
                .get_or_create(&labels([("platform", platform), ("job", &job)]))
                .inc();
        }
    }
}

/// After giving up on one contact method, the next one should not wait
/// for its own delay: the user has not been reached.
pub(super) fn bring_next_method_forward(
    tx: &mut dyn Tx,
    failed: &OutboxEntry,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let Some(prefix) = failed
        .key
        .strip_suffix(&format!("/m{}", failed.method_index))
    else {
        return Ok(());
    };
    let next_key = format!("{prefix}/m{}", failed.method_index + 1);
    if let Some(mut next) = tx.outbox_entry(&next_key)?
        && next.state == DeliveryState::Pending
        && next.due > now
    {
        next.due = now;
        next.first_due = now;
        tx.put_outbox(&next)?;
    }
    Ok(())
}

/// Where a chat job stands among the posts in its incident channel (`None`
/// for a job that posts nothing there): the intro first, then by when it
/// was queued and the timeline entry that caused it (a summary after the
/// notices queued with it).
fn post_order(entry: &OutboxEntry) -> Option<(DateTime<Utc>, u64)> {
    use crate::notify::Job;
    if !matches!(entry.job, Job::Post { .. } | Job::PostSummary) {
        return None;
    }
    if entry.key.ends_with("/post/intro") {
        return Some((DateTime::<Utc>::MIN_UTC, 0));
    }
    let seq = entry
        .key
        .rsplit_once("/post/")
        .and_then(|(_, n)| n.parse().ok())
        .unwrap_or(u64::MAX);
    Some((entry.created_at, seq))
}
