//! The write path: one thread applies the state changes, in batches.
//!
//! A caller hands the writer a job (a closure over a [`Tx`]) and waits for
//! its answer. The writer thread takes the first job and every other job
//! already queued behind it, runs them in order in **one** store transaction,
//! flushes once, and only then answers them all. So a burst of alerts costs
//! one transaction and one fsync per batch rather than per alert, and no
//! caller hears "done" before its change is on disk.
//!
//! Why batch the transaction as well as the fsync: sled 0.34 seals and writes
//! its log buffer at every multi-tree transaction (on a pool of IO threads),
//! so the transaction, not the fsync, was most of the cost of an alert.
//!
//! Jobs are isolated: if the batch's transaction fails, every job in it is
//! run again alone, so one failing job fails only its own caller. A job may
//! therefore run more than once, and must only touch the store through `tx`.
//!
//! Jobs somebody is waiting for ([`Priority::Now`]: an alert, a person's
//! command) go before background work ([`Priority::Background`]: timers
//! coming due, delivery records), and a background batch stops taking jobs
//! after 2 ms. So a backlog of a million overdue timers holds a new alert up
//! by a couple of milliseconds, not by the whole backlog. When both kinds
//! are queued, batches of each take turns, so a steady stream of alerts
//! cannot starve the pages either.

use crate::escalation::Timer;
use crate::incident::{Incident, IncidentId, TimelineEntry};
use crate::notify::OutboxEntry;
use crate::store::{Store, StoreError, StoredEvent, Tx};
use std::collections::VecDeque;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// The most jobs in one transaction.
const MAX_BATCH: usize = 256;
/// How long a background batch keeps taking jobs.
const BACKGROUND_BUDGET: std::time::Duration = std::time::Duration::from_millis(2);

/// Who waits for a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Priority {
    /// A sender or a person waits for the answer.
    Now,
    /// Background work: it can wait for the others.
    Background,
}

/// A queued job, with the caller waiting for its answer.
trait Job: Send {
    /// Runs the job's writes in `tx`.
    fn run(&mut self, tx: &mut dyn Tx) -> Result<(), StoreError>;
    /// Answers the caller: `result` says whether the job's writes are durable.
    fn finish(self: Box<Self>, result: Result<(), StoreError>);
}

struct Typed<F, R> {
    /// Counts the job as queued until it is answered (or dropped).
    _queued: Option<Queued>,
    f: F,
    out: Option<R>,
    done: oneshot::Sender<Result<R, StoreError>>,
    /// The caller's span, so the job's logs carry its incident.
    span: tracing::Span,
}

impl<F, R> Job for Typed<F, R>
where
    F: FnMut(&mut dyn Tx) -> Result<R, StoreError> + Send,
    R: Send,
{
    fn run(&mut self, tx: &mut dyn Tx) -> Result<(), StoreError> {
        let _entered = self.span.enter();
        self.out = Some((self.f)(tx)?);
        Ok(())
    }

    fn finish(self: Box<Self>, result: Result<(), StoreError>) {
        let Typed {
            out, done, _queued, ..
        } = *self;
        drop(_queued);
        let answer = result.and_then(|()| {
            out.ok_or_else(|| StoreError::Backend("the writer lost a job's result".into()))
        });
        // The caller may have gone (its request was cancelled): the change is
        // written all the same.
        let _ = done.send(answer);
    }
}

/// One waited-for job in the queue, counted until it is answered.
struct Queued(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for Queued {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// The writer: a handle to the thread that applies every queued job.
pub(crate) struct Writer {
    /// Waited-for jobs queued or running, and how many may be.
    queued: Arc<std::sync::atomic::AtomicUsize>,
    max_queued: usize,
    /// `None` only while dropping.
    queue: Option<mpsc::UnboundedSender<(Priority, Box<dyn Job>)>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    /// Starts the writer thread over `store`, taking at most `max_queued`
    /// waited-for jobs at once (background jobs are never refused: they
    /// are bounded by the store's own batches of due timers and pages).
    pub(crate) fn start(store: Arc<dyn Store>, max_queued: usize) -> Result<Self, StoreError> {
        let (queue, jobs) = mpsc::unbounded_channel();
        let thread = std::thread::Builder::new()
            .name("tocsin-writer".into())
            .spawn(move || serve(store.as_ref(), jobs))
            .map_err(|e| StoreError::Backend(format!("cannot start the writer: {e}")))?;
        Ok(Self {
            queued: Arc::default(),
            max_queued,
            queue: Some(queue),
            thread: Some(thread),
        })
    }

    /// Runs `f` in a transaction (shared with whatever else is queued) and
    /// returns its result once the transaction is on disk.
    pub(crate) async fn write<R, F>(&self, priority: Priority, f: F) -> Result<R, StoreError>
    where
        F: FnMut(&mut dyn Tx) -> Result<R, StoreError> + Send + 'static,
        R: Send + 'static,
    {
        let queued = if priority == Priority::Now {
            let n = self
                .queued
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let guard = Queued(self.queued.clone());
            if n >= self.max_queued {
                return Err(StoreError::Overloaded(format!(
                    "{n} writes are waiting ([server] max_queued_writes); nothing was applied, retry shortly"
                )));
            }
            Some(guard)
        } else {
            None
        };
        let (done, answer) = oneshot::channel();
        let job = Box::new(Typed {
            _queued: queued,
            f,
            out: None,
            done,
            span: tracing::Span::current(),
        });
        self.queue
            .as_ref()
            .and_then(|q| q.send((priority, job)).ok())
            .ok_or_else(|| StoreError::Backend("the writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Backend("the writer stopped before answering".into()))?
    }
}

impl Drop for Writer {
    /// Stops the thread once the queue is empty and waits for it, so the
    /// store is closed when the service is gone.
    fn drop(&mut self) {
        self.queue.take();
        if let Some(thread) = self.thread.take()
            && thread.thread().id() != std::thread::current().id()
        {
            let _ = thread.join();
        }
    }
}

fn serve(store: &dyn Store, mut jobs: mpsc::UnboundedReceiver<(Priority, Box<dyn Job>)>) {
    let mut now: VecDeque<Box<dyn Job>> = VecDeque::new();
    let mut background: VecDeque<Box<dyn Job>> = VecDeque::new();
    let mut background_turn = false;
    loop {
        let mut next = if now.is_empty() && background.is_empty() {
            match jobs.blocking_recv() {
                Some(job) => Some(job),
                None => return,
            }
        } else {
            None
        };
        while let Some((priority, job)) = next.take().or_else(|| jobs.try_recv().ok()) {
            match priority {
                Priority::Now => now.push_back(job),
                Priority::Background => background.push_back(job),
            }
        }
        // Waited-for jobs first, but when both kinds are queued they take
        // turns, so a steady stream of alerts cannot starve the pages.
        let background_next = now.is_empty() || (!background.is_empty() && background_turn);
        background_turn = !background_next;
        let (from, budget) = if background_next {
            (&mut background, Some(BACKGROUND_BUDGET))
        } else {
            (&mut now, None)
        };
        let take = from.len().min(MAX_BATCH);
        let mut batch: Vec<Box<dyn Job>> = from.drain(..take).collect();
        let results = run_batch(store, &mut batch, budget);
        // Jobs the budget left out go back to the front, in order.
        for job in batch.drain(results.len()..).rev() {
            from.push_front(job);
        }
        let flushed = if results.iter().any(Result::is_ok) {
            store.flush()
        } else {
            Ok(())
        };
        let flush_error = flushed.err().map(|e| e.to_string());
        for (job, result) in batch.drain(..).zip(results) {
            let result = match (&flush_error, result) {
                (Some(e), Ok(())) => Err(StoreError::Backend(e.clone())),
                (_, r) => r,
            };
            job.finish(result);
        }
    }
}

/// Runs the batch in one transaction; if that fails, each job alone. With a
/// `budget`, stops taking jobs once it is spent (after at least one): the
/// results cover the jobs that ran, a prefix of the batch.
///
/// A job that panics (a bug) fails like a storage error: its transaction is
/// not committed, the others are retried alone, and the thread goes on.
fn run_batch(
    store: &dyn Store,
    batch: &mut [Box<dyn Job>],
    budget: Option<std::time::Duration>,
) -> Vec<Result<(), StoreError>> {
    let mut ran = 0;
    let together = guarded(|| {
        store.transact(&mut |tx| {
            ran = 0;
            let started = std::time::Instant::now();
            for job in batch.iter_mut() {
                if ran > 0 && budget.is_some_and(|b| started.elapsed() > b) {
                    break;
                }
                job.run(tx)?;
                ran += 1;
            }
            Ok(())
        })
    });
    match together {
        Ok(()) => (0..ran).map(|_| Ok(())).collect(),
        Err(e) if batch.len() == 1 => vec![Err(e)],
        Err(_) => batch
            .iter_mut()
            .map(|job| guarded(|| store.transact(&mut |tx| job.run(tx))))
            .collect(),
    }
}

/// Runs `f`, turning a panic into an error.
fn guarded(f: impl FnOnce() -> Result<(), StoreError>) -> Result<(), StoreError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".into());
        tracing::error!(panic = %what, "A state change panicked; it was not written");
        Err(StoreError::Backend(format!("the change failed: {what}")))
    })
}

/// What kinds of work a transaction queued.
#[derive(Debug, Default, Clone)]
pub(crate) struct Wrote {
    /// It added an escalation timer.
    pub(crate) timer: bool,
    /// It queued an outbox entry.
    pub(crate) outbox: bool,
    /// Incidents with flap state it wrote, and whether each is flapping
    /// (for `tocsin_incidents_flapping`, applied once it commits).
    pub(crate) flapping: Vec<(IncidentId, bool)>,
}

/// A [`Tx`] that notes whether timers or outbox entries were written, so
/// only the background task that has new work is woken.
pub(crate) struct Noting<'a> {
    tx: &'a mut dyn Tx,
    pub(crate) wrote: Wrote,
    /// The incidents written, each once, for the feed.
    pub(crate) changed: Vec<IncidentId>,
}

impl<'a> Noting<'a> {
    pub(crate) fn new(tx: &'a mut dyn Tx) -> Self {
        Self {
            tx,
            wrote: Wrote::default(),
            changed: Vec::new(),
        }
    }
}

impl Tx for Noting<'_> {
    fn open_incident(
        &self,
        service: &str,
        dedup_key: &str,
    ) -> Result<Option<IncidentId>, StoreError> {
        self.tx.open_incident(service, dedup_key)
    }
    fn set_open_incident(
        &mut self,
        service: &str,
        dedup_key: &str,
        id: Option<IncidentId>,
    ) -> Result<(), StoreError> {
        self.tx.set_open_incident(service, dedup_key, id)
    }
    fn recently_resolved(
        &self,
        service: &str,
        dedup_key: &str,
    ) -> Result<Option<crate::store::RecentlyResolved>, StoreError> {
        self.tx.recently_resolved(service, dedup_key)
    }
    fn set_recently_resolved(
        &mut self,
        service: &str,
        dedup_key: &str,
        resolved: Option<&crate::store::RecentlyResolved>,
    ) -> Result<(), StoreError> {
        self.tx.set_recently_resolved(service, dedup_key, resolved)
    }
    fn incident(&self, id: IncidentId) -> Result<Option<Incident>, StoreError> {
        self.tx.incident(id)
    }
    fn put_incident(&mut self, incident: &Incident) -> Result<(), StoreError> {
        if !self.changed.contains(&incident.id) {
            self.changed.push(incident.id);
        }
        if incident.flap.is_some() {
            let flapping = incident.is_flapping() && incident.status.is_open();
            self.wrote.flapping.push((incident.id, flapping));
        }
        self.tx.put_incident(incident)
    }
    fn next_incident_id(&mut self) -> Result<IncidentId, StoreError> {
        self.tx.next_incident_id()
    }
    fn append_timeline(&mut self, id: IncidentId, entry: &TimelineEntry) -> Result<(), StoreError> {
        self.tx.append_timeline(id, entry)
    }
    fn record_event(&mut self, event: &StoredEvent) -> Result<(), StoreError> {
        self.tx.record_event(event)
    }
    fn record_change(
        &mut self,
        service: &str,
        change: &crate::incident::ServiceChange,
    ) -> Result<(), StoreError> {
        self.tx.record_change(service, change)
    }
    fn put_timer(&mut self, timer: &Timer) -> Result<(), StoreError> {
        self.wrote.timer = true;
        self.tx.put_timer(timer)
    }
    fn delete_timer(&mut self, timer: &Timer) -> Result<bool, StoreError> {
        self.tx.delete_timer(timer)
    }
    fn outbox_entry(&self, key: &str) -> Result<Option<OutboxEntry>, StoreError> {
        self.tx.outbox_entry(key)
    }
    fn put_outbox(&mut self, entry: &OutboxEntry) -> Result<(), StoreError> {
        // Only a pending entry is work for the outbox worker (a `log` page
        // is written delivered).
        self.wrote.outbox |= entry.state == crate::notify::DeliveryState::Pending;
        self.tx.put_outbox(entry)
    }
    fn set_channel(
        &mut self,
        platform: &str,
        channel: &str,
        id: IncidentId,
    ) -> Result<(), StoreError> {
        self.tx.set_channel(platform, channel, id)
    }
    fn remove_incident(&mut self, expired: &crate::store::Expired) -> Result<bool, StoreError> {
        self.tx.remove_incident(expired)
    }
    fn remove_event(&mut self, id: u64) -> Result<bool, StoreError> {
        self.tx.remove_event(id)
    }
    fn maintenance_windows(&self) -> Result<Vec<crate::maintenance::StoredWindow>, StoreError> {
        self.tx.maintenance_windows()
    }
    fn put_maintenance_window(
        &mut self,
        window: &crate::maintenance::StoredWindow,
    ) -> Result<(), StoreError> {
        self.tx.put_maintenance_window(window)
    }
    fn delete_maintenance_window(&mut self, id: u64) -> Result<bool, StoreError> {
        self.tx.delete_maintenance_window(id)
    }
    fn next_maintenance_id(&mut self) -> Result<u64, StoreError> {
        self.tx.next_maintenance_id()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SledStore;

    fn writer() -> (tempfile::TempDir, Arc<SledStore>, Writer) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SledStore::open(dir.path()).unwrap());
        let writer = Writer::start(store.clone(), 10_000).unwrap();
        (dir, store, writer)
    }

    #[tokio::test]
    async fn concurrent_jobs_share_transactions_and_flushes() {
        let (_dir, store, writer) = writer();
        let writer = Arc::new(writer);
        let before = store.flush_count();
        let calls: Vec<_> = (0..200)
            .map(|_| {
                let w = writer.clone();
                tokio::spawn(
                    async move { w.write(Priority::Now, |tx| tx.next_incident_id()).await },
                )
            })
            .collect();
        let mut ids = Vec::new();
        for c in calls {
            ids.push(c.await.unwrap().unwrap().0);
        }
        ids.sort();
        // Every job ran exactly once, in one sequence, with no gaps.
        assert_eq!(ids, (1..=200).collect::<Vec<_>>());
        let flushes = store.flush_count() - before;
        assert!(
            (1..200).contains(&flushes),
            "{flushes} flushes for 200 jobs queued at once"
        );
    }

    #[tokio::test]
    async fn a_failing_job_fails_alone() {
        let (_dir, _store, writer) = writer();
        let writer = Arc::new(writer);
        let mut calls = Vec::new();
        for i in 0..50u64 {
            let w = writer.clone();
            calls.push(tokio::spawn(async move {
                w.write(Priority::Now, move |tx| {
                    let id = tx.next_incident_id()?;
                    if i == 25 {
                        return Err(StoreError::Aborted("job 25 refuses".into()));
                    }
                    Ok(id)
                })
                .await
            }));
        }
        let mut ids = Vec::new();
        for (i, c) in calls.into_iter().enumerate() {
            match c.await.unwrap() {
                Ok(id) => ids.push(id.0),
                Err(e) => {
                    assert_eq!(i, 25);
                    assert_eq!(e.to_string(), "job 25 refuses");
                }
            }
        }
        // The 49 others were written; the refused job's number was rolled
        // back with it, so there is no gap.
        ids.sort();
        assert_eq!(ids, (1..=49).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn a_panicking_job_fails_alone_and_the_writer_goes_on() {
        let (_dir, _store, writer) = writer();
        let writer = Arc::new(writer);
        let mut calls = Vec::new();
        for i in 0..20u64 {
            let w = writer.clone();
            calls.push(tokio::spawn(async move {
                w.write(Priority::Now, move |tx| {
                    let id = tx.next_incident_id()?;
                    assert_ne!(i, 7, "job 7 has a bug");
                    Ok(id)
                })
                .await
            }));
        }
        let mut ids = Vec::new();
        for (i, c) in calls.into_iter().enumerate() {
            match c.await.unwrap() {
                Ok(id) => ids.push(id.0),
                Err(e) => {
                    assert_eq!(i, 7);
                    assert!(e.to_string().contains("job 7 has a bug"), "{e}");
                }
            }
        }
        ids.sort();
        assert_eq!(ids, (1..=19).collect::<Vec<_>>());
        // Still serving.
        let next = writer
            .write(Priority::Now, |tx| tx.next_incident_id())
            .await
            .unwrap();
        assert_eq!(next.0, 20);
    }

    #[tokio::test]
    async fn waited_for_jobs_go_before_background_work_which_runs_in_short_batches() {
        let (_dir, store, writer) = writer();
        let writer = Arc::new(writer);
        let order = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let before = store.flush_count();
        let mut tasks = Vec::new();
        // 20 background jobs of 1 ms each, then one somebody waits for.
        for i in 0..21 {
            let (w, order) = (writer.clone(), order.clone());
            let priority = if i == 20 {
                Priority::Now
            } else {
                Priority::Background
            };
            tasks.push(tokio::spawn(async move {
                let id = w
                    .write(priority, |tx| {
                        std::thread::sleep(std::time::Duration::from_millis(1));
                        tx.next_incident_id()
                    })
                    .await
                    .unwrap();
                order.lock().push((id.0, i));
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        // The order they ran in is the order of the numbers they drew.
        let mut ran = order.lock().clone();
        ran.sort();
        let ran: Vec<i32> = ran.into_iter().map(|(_, i)| i).collect();
        let place = ran.iter().position(|&i| i == 20).unwrap();
        assert!(place < 10, "the waited-for job ran {place}th: {ran:?}");
        // Background jobs ran in the order they were queued.
        let background: Vec<i32> = ran.iter().copied().filter(|&i| i != 20).collect();
        assert_eq!(background, (0..20).collect::<Vec<_>>());
        // 2 ms per background batch: 20 ms of work takes several flushes.
        let flushes = store.flush_count() - before;
        assert!(flushes >= 5, "{flushes} flushes");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_steady_stream_of_waited_for_jobs_does_not_starve_background_work() {
        let (_dir, _store, writer) = writer();
        let writer = Arc::new(writer);
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        // More waited-for work than the writer can do: a 3 ms job about
        // every millisecond, so there is always one queued.
        let stream = {
            let (w, stop) = (writer.clone(), stop.clone());
            tokio::spawn(async move {
                let mut jobs = tokio::task::JoinSet::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let w = w.clone();
                    jobs.spawn(async move {
                        w.write(Priority::Now, |tx| {
                            std::thread::sleep(std::time::Duration::from_millis(3));
                            tx.next_incident_id()
                        })
                        .await
                        .unwrap()
                    });
                    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                }
                jobs.join_all().await.len()
            })
        };
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        // Background jobs, one after the other, while the stream goes on.
        // Each waits for at most one batch of the stream's jobs.
        for _ in 0..3 {
            let done = tokio::time::timeout(
                std::time::Duration::from_secs(2),
                writer.write(Priority::Background, |tx| tx.next_incident_id()),
            )
            .await;
            assert!(done.is_ok(), "a background job starved behind the stream");
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(stream.await.unwrap() > 10, "the stream ran meanwhile");
    }

    #[tokio::test]
    async fn a_failed_write_answers_with_the_error_and_leaves_nothing() {
        let (_dir, store, writer) = writer();
        store.set_write_failure(true);
        let err = writer
            .write(Priority::Now, |tx| tx.next_incident_id())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("storage"), "{err}");
        store.set_write_failure(false);
        let id = writer
            .write(Priority::Now, |tx| tx.next_incident_id())
            .await
            .unwrap();
        assert_eq!(id.0, 1, "the failed write allocated nothing");
    }
}
