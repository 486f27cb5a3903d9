//! The sled store's applier: the thread that puts logged writes into sled.
//!
//! A commit appends its writes to the write-ahead log ([`super::wal`]) and
//! syncs it; from then on the writes stand, and the commit hands them here
//! and returns. This thread applies them to sled's trees while the writer
//! goes on with the next transaction, so sled's inserts (about half of the
//! writer's time: sled copies and rewrites whole tree nodes) run on the
//! other core. The batches that piled up while it applied the last ones are
//! applied together, each key once with its last value: an outbox entry
//! written pending and then delivered, or a queue key added and then
//! removed, costs sled one write or none.
//!
//! Until a batch is applied, sled does not have it. The writer's own
//! transactions read through the batches still [`Applier::pending`]; every
//! other read first waits until what was committed before it began is
//! applied ([`Applier::settle`]), so a read never misses a write that was
//! acknowledged before it.

use parking_lot::{Condvar, Mutex};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

/// A transaction's writes, per tree: key → new value (`None`: removed).
pub(super) type Writes = Vec<BTreeMap<Vec<u8>, Option<Vec<u8>>>>;

/// Where the applier puts writes: sled's trees, by index.
pub(super) trait Target: Send + Sync + 'static {
    /// Writes (or, with `None`, removes) one key.
    fn apply(&self, tree: usize, key: &[u8], value: Option<&[u8]>) -> Result<(), String>;
}

/// A logged batch waiting to be applied.
struct Batch {
    seq: u64,
    target: Arc<dyn Target>,
    writes: Arc<Writes>,
}

#[derive(Default)]
struct State {
    /// Oldest first.
    queue: VecDeque<Batch>,
    /// The last batch handed over.
    committed: u64,
    /// The last batch applied (or given up on, see `failed`).
    applied: u64,
    /// Why applying failed; taken by the writer, which reopens the store
    /// and applies the log again.
    failed: Option<String>,
    stop: bool,
    /// Tests: applies nothing while set.
    #[cfg(test)]
    paused: bool,
}

impl State {
    #[cfg(test)]
    fn is_paused(&self) -> bool {
        self.paused
    }

    #[cfg(not(test))]
    fn is_paused(&self) -> bool {
        false
    }
}

struct Shared {
    state: Mutex<State>,
    /// Wakes the thread: work, or stop.
    work: Condvar,
    /// Wakes those waiting for progress.
    progress: Condvar,
}

/// The handle to the applier thread.
pub(super) struct Applier {
    shared: Arc<Shared>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// The most batches waiting before a commit waits for the applier: bounds
/// the memory they hold and how long a read may wait.
const MAX_QUEUED: usize = 64;

impl Applier {
    /// Starts the thread.
    pub(super) fn start() -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            work: Condvar::new(),
            progress: Condvar::new(),
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("tocsin-apply".into())
            .spawn(move || {
                lower_priority();
                run(&s)
            })?;
        Ok(Self {
            shared,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Hands over a logged batch. Waits while [`MAX_QUEUED`] are waiting.
    pub(super) fn push(&self, target: Arc<dyn Target>, writes: Writes) {
        let mut s = self.shared.state.lock();
        while s.queue.len() >= MAX_QUEUED && !s.stop {
            self.shared.progress.wait(&mut s);
        }
        s.committed += 1;
        let seq = s.committed;
        s.queue.push_back(Batch {
            seq,
            target,
            writes: Arc::new(writes),
        });
        self.shared.work.notify_one();
    }

    /// The batches not yet applied, oldest first: what the writer's
    /// transactions read before sled. Only the writer adds batches, so
    /// while it runs a transaction sled changes only by applying these.
    ///
    /// Refused while a failure is not yet taken ([`Applier::take_failure`]):
    /// the batches that failed are gone from the queue and sled does not
    /// have them, so a transaction would read around them.
    pub(super) fn pending(&self) -> Result<Vec<Arc<Writes>>, String> {
        let s = self.shared.state.lock();
        if let Some(e) = &s.failed {
            return Err(e.clone());
        }
        Ok(s.queue.iter().map(|b| b.writes.clone()).collect())
    }

    /// Waits until every batch handed over so far is applied.
    pub(super) fn settle(&self) {
        let mut s = self.shared.state.lock();
        let upto = s.committed;
        while s.applied < upto && !s.stop {
            self.shared.progress.wait(&mut s);
        }
    }

    /// Why applying failed, if it did since the last call. The batches it
    /// could not apply are dropped (they are in the log).
    pub(super) fn take_failure(&self) -> Option<String> {
        self.shared.state.lock().failed.take()
    }

    /// Tests: stops (or resumes) applying, so writes stay logged only.
    #[cfg(test)]
    pub(super) fn pause(&self, paused: bool) {
        self.shared.state.lock().paused = paused;
        self.shared.work.notify_all();
    }

    /// Applies what is queued, stops the thread and waits for it.
    pub(super) fn stop(&self) {
        self.settle();
        self.halt();
    }

    /// Stops the thread once it has finished the batches it is applying,
    /// dropping the rest (as a crash would; tests).
    pub(super) fn halt(&self) {
        {
            let mut s = self.shared.state.lock();
            s.stop = true;
            self.shared.work.notify_all();
            self.shared.progress.notify_all();
        }
        if let Some(t) = self.thread.lock().take() {
            let _ = t.join();
        }
        let mut s = self.shared.state.lock();
        s.queue.clear();
        s.applied = s.committed;
    }
}

impl Drop for Applier {
    fn drop(&mut self) {
        self.halt();
    }
}

/// Runs this thread at nice 10: the writer and the HTTP workers, whom a
/// sender is waiting for, go first on a busy machine, and this thread takes
/// the CPU they leave. It is never starved (the scheduler still gives it a
/// share), and once [`MAX_QUEUED`] batches wait, the writer waits for it.
/// Measured: with paging at 8 connections, 4,800-6,400 events/s at equal
/// priority against 6,000-8,100 at nice 10 (docs/benchmarks.md).
fn lower_priority() {
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), 10) {
        tracing::debug!(error = %e, "Could not lower the applier thread's priority");
    }
}

fn run(shared: &Shared) {
    loop {
        let (batches, upto) = {
            let mut s = shared.state.lock();
            while (s.queue.is_empty() || s.is_paused()) && !s.stop {
                shared.work.wait(&mut s);
            }
            if s.stop {
                return;
            }
            let batches: Vec<(Arc<dyn Target>, Arc<Writes>)> = s
                .queue
                .iter()
                .map(|b| (b.target.clone(), b.writes.clone()))
                .collect();
            (batches, s.queue.back().map_or(s.applied, |b| b.seq))
        };
        // A panic in sled (a bug) must not leave readers waiting forever.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| apply(&batches)))
            .unwrap_or_else(|_| Err("applying a logged write panicked".into()));
        drop(batches);
        let mut s = shared.state.lock();
        while s.queue.front().is_some_and(|b| b.seq <= upto) {
            s.queue.pop_front();
        }
        s.applied = upto;
        if let Err(e) = result {
            // sled refuses writes after an I/O error until reopened: the
            // writer reopens the store and applies the log again, which
            // holds these batches and any after them.
            s.failed = Some(e);
            s.queue.clear();
            s.applied = s.committed;
        }
        shared.progress.notify_all();
    }
}

/// Applies `batches` in order, each key once with its last value.
fn apply(batches: &[(Arc<dyn Target>, Arc<Writes>)]) -> Result<(), String> {
    let mut i = 0;
    while i < batches.len() {
        // Batches for the same database go together (a reopen between two
        // batches is the only way they differ).
        let target = &batches[i].0;
        let mut j = i + 1;
        while j < batches.len() && Arc::ptr_eq(&batches[j].0, target) {
            j += 1;
        }
        let group = &batches[i..j];
        if let [(_, writes)] = group {
            for (t, w) in writes.iter().enumerate() {
                for (k, v) in w {
                    target.apply(t, k, v.as_deref())?;
                }
            }
        } else {
            let trees = group.iter().map(|(_, w)| w.len()).max().unwrap_or(0);
            let mut merged: Vec<BTreeMap<&[u8], Option<&[u8]>>> = vec![BTreeMap::new(); trees];
            for (_, writes) in group {
                for (t, w) in writes.iter().enumerate() {
                    for (k, v) in w {
                        merged[t].insert(k.as_slice(), v.as_deref());
                    }
                }
            }
            for (t, w) in merged.into_iter().enumerate() {
                for (k, v) in w {
                    target.apply(t, k, v)?;
                }
            }
        }
        i = j;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records what it is given; fails on a key named "fail".
    #[derive(Default)]
    struct Recorder(Mutex<Vec<super::super::wal::Write>>);

    impl Target for Recorder {
        fn apply(&self, tree: usize, key: &[u8], value: Option<&[u8]>) -> Result<(), String> {
            if key == b"fail" {
                return Err("refused".into());
            }
            if key == b"panic" {
                panic!("a bug");
            }
            self.0
                .lock()
                .push((tree, key.to_vec(), value.map(<[u8]>::to_vec)));
            Ok(())
        }
    }

    fn writes(items: &[(usize, &str, Option<&str>)]) -> Writes {
        let mut w: Writes = vec![BTreeMap::new(); 2];
        for (t, k, v) in items {
            w[*t].insert(k.as_bytes().to_vec(), v.map(|v| v.as_bytes().to_vec()));
        }
        w
    }

    #[test]
    fn batches_are_applied_in_order_with_each_key_once() {
        let rec = Arc::new(Recorder::default());
        let target: Arc<dyn Target> = rec.clone();
        let batches = vec![
            (
                target.clone(),
                Arc::new(writes(&[(0, "a", Some("1")), (1, "q", Some(""))])),
            ),
            (
                target.clone(),
                Arc::new(writes(&[(0, "a", Some("2")), (1, "q", None)])),
            ),
            (target.clone(), Arc::new(writes(&[(0, "b", Some("3"))]))),
        ];
        apply(&batches).unwrap();
        let got = rec.0.lock().clone();
        assert_eq!(
            got,
            vec![
                (0, b"a".to_vec(), Some(b"2".to_vec())),
                (0, b"b".to_vec(), Some(b"3".to_vec())),
                (1, b"q".to_vec(), None),
            ]
        );
    }

    #[test]
    fn settle_waits_until_everything_handed_over_is_applied() {
        let applier = Applier::start().unwrap();
        let rec = Arc::new(Recorder::default());
        for i in 0..200 {
            let key = format!("k{i:03}");
            applier.push(rec.clone(), writes(&[(0, &key, Some("v"))]));
        }
        applier.settle();
        assert_eq!(rec.0.lock().len(), 200);
        assert!(applier.pending().unwrap().is_empty());
        assert_eq!(applier.take_failure(), None);
    }

    #[test]
    fn a_refused_write_is_reported_and_the_queue_dropped() {
        let applier = Applier::start().unwrap();
        let rec = Arc::new(Recorder::default());
        applier.push(rec.clone(), writes(&[(0, "fail", Some("v"))]));
        applier.settle();
        // Until the failure is taken, no transaction may read around it.
        assert_eq!(applier.pending().unwrap_err(), "refused");
        assert_eq!(applier.take_failure().as_deref(), Some("refused"));
        assert!(applier.pending().is_ok());
        assert_eq!(applier.take_failure(), None);
        // It goes on applying what comes next.
        applier.push(rec.clone(), writes(&[(0, "ok", Some("v"))]));
        applier.settle();
        assert_eq!(rec.0.lock().len(), 1);
        // A panic is a failure too, and readers are not left waiting.
        applier.push(rec.clone(), writes(&[(0, "panic", Some("v"))]));
        applier.settle();
        assert!(applier.take_failure().unwrap().contains("panicked"));
        applier.push(rec.clone(), writes(&[(0, "ok2", Some("v"))]));
        applier.settle();
        assert_eq!(rec.0.lock().len(), 2);
    }
}
