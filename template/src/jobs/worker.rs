//! The worker: one loop per queue claims as many due jobs as it has free slots (and, while the
//! queue has a backlog, one batch ahead) and runs each in a task of its own, so a panic fails
//! that attempt and nothing else. A job's slot is free again once its handler returns, while
//! its outcome is still being recorded. Beside the loops, a listener wakes them when a job
//! commits, a recorder deletes succeeded jobs in batches, a ticker renews the leases of claimed
//! jobs, another reads the queue depths for metrics, and the scheduler enqueues cron ticks.
//!
//! Stopping stops claiming, lets running jobs finish up to the shutdown timeout, then cancels
//! the rest and hands their jobs, with those claimed ahead, back to the queue without using up
//! an attempt.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use sqlx::postgres::PgListener;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};
use tracing::Instrument;
use uuid::Uuid;

use super::metrics::{KindLabels, Outcome};
use super::queue::{self, AfterFailure, Claim, Claimed};
use super::registry::{Failure, Registry};
use super::schedule::Schedules;
use crate::{AppState, telemetry};

/// The channel the `jobs` table's trigger notifies, with the queue's name.
const CHANNEL: &str = "jobs_ready";

/// How soon a worker looks again at a job that is due but was not claimable.
const RECHECK: Duration = Duration::from_millis(50);

/// How often the queue depths are read for metrics.
const DEPTHS_EVERY: Duration = Duration::from_secs(5);

/// The most successes recorded in one statement.
const SUCCESSES_AT_ONCE: usize = 256;

/// A running worker; [`Worker::stop`] ends it.
#[derive(Debug)]
pub struct Worker {
    stop: watch::Sender<bool>,
    queues: Vec<JoinHandle<()>>,
    helpers: Vec<JoinHandle<()>>,
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    state: AppState,
    registry: Registry,
    /// Names this worker's leases.
    owner: Uuid,
    wake: BTreeMap<&'static str, Notify>,
    successes: mpsc::UnboundedSender<Success>,
    /// The attempts claimed and not ended, `(id, attempt)`: the only jobs whose leases this
    /// worker renews, so that one whose outcome could not be recorded (the database failed just
    /// then) runs out its lease and runs again, instead of being held for as long as the worker
    /// lives.
    held: Mutex<HashSet<(Uuid, i32)>>,
}

/// Keeps an attempt in [`Shared::held`] from its claim until it ends, cancelled ones included.
struct Held {
    shared: Arc<Shared>,
    job: (Uuid, i32),
}

impl Held {
    fn new(shared: &Arc<Shared>, job: &Claimed) -> Self {
        let job = (job.id, job.attempts);
        shared.held.lock().unwrap_or_else(PoisonError::into_inner).insert(job);
        Self {
            shared: shared.clone(),
            job,
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut held = self.shared.held.lock().unwrap_or_else(PoisonError::into_inner);
        held.remove(&self.job);
    }
}

/// A job that succeeded, `(id, attempt)`, and who waits to hear whether its success was
/// recorded (`Some(false)`: its lease had been lost; `None`: the database failed).
#[derive(Debug)]
struct Success {
    job: (Uuid, i32),
    recorded: oneshot::Sender<Option<bool>>,
}

impl Worker {
    /// Starts a worker for the service's own [`super::registry`].
    pub fn start(state: AppState) -> anyhow::Result<Self> {
        Self::start_with(state, super::registry())
    }

    /// Starts a worker for `registry`; fails when a schedule's pattern is invalid.
    pub fn start_with(state: AppState, registry: Registry) -> anyhow::Result<Self> {
        let schedules = Schedules::parse(registry.schedules(), &state.config.jobs.schedules)?;
        let wake = registry
            .queues()
            .into_iter()
            .map(|queue| (queue, Notify::new()))
            .collect();
        let (successes, to_record) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            state,
            registry,
            owner: Uuid::new_v4(),
            wake,
            successes,
            held: Mutex::default(),
        });
        let (stop, stopped) = watch::channel(false);
        let queues = shared
            .wake
            .keys()
            .map(|queue| tokio::spawn(run_queue(shared.clone(), queue, stopped.clone())))
            .collect();
        let helpers = vec![
            tokio::spawn(listen(shared.clone())),
            tokio::spawn(record_successes(shared.clone(), to_record)),
            tokio::spawn(renew_leases(shared.clone())),
            tokio::spawn(read_depths(shared.clone())),
            tokio::spawn(schedules.run(shared.state.clone())),
        ];
        let names: Vec<&str> = shared.wake.keys().copied().collect();
        tracing::info!(owner = %shared.owner, queues = names.join(","), "worker started");
        Ok(Self {
            stop,
            queues,
            helpers,
            shared,
        })
    }

    /// Stops claiming, waits for running jobs up to the shutdown timeout, and hands back those
    /// still running then.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        for queue in std::mem::take(&mut self.queues) {
            let _ = queue.await;
        }
        for helper in &self.helpers {
            helper.abort();
        }
        match queue::hand_back(self.shared.state.db.pool(), self.shared.owner).await {
            Ok(0) => {}
            Ok(count) => tracing::warn!(count, "handed unfinished jobs back to the queue"),
            // Their leases run out instead, and they run again then.
            Err(err) => tracing::error!(error = %err, "cannot hand unfinished jobs back"),
        }
        tracing::info!("worker stopped");
    }
}

/// A worker dropped without [`Worker::stop`] (a failed start, a test) leaves no task behind;
/// its jobs' leases run out.
impl Drop for Worker {
    fn drop(&mut self) {
        for task in self.queues.iter().chain(&self.helpers) {
            task.abort();
        }
    }
}

async fn run_queue(shared: Arc<Shared>, queue: &'static str, mut stopped: watch::Receiver<bool>) {
    let config = &shared.state.config.jobs;
    let concurrency = config.concurrency(queue);
    let slots = Arc::new(Semaphore::new(concurrency));
    let kinds = shared.registry.kinds(queue);
    let claim = Claim {
        queue,
        kinds: &kinds,
        owner: shared.owner,
        lease: config.lease(),
    };
    let wake = &shared.wake[queue];
    // Attempts, and outcomes being recorded: all are waited for when the worker stops.
    let mut running = JoinSet::new();
    // Claimed ahead of free slots while the queue has a backlog (the last claim came back full):
    // a freed slot starts one of these at once, and the next claim runs while jobs still do.
    // At most one batch of `concurrency`; leased and renewed like running jobs, and handed back
    // unstarted when the worker stops.
    let mut ahead = VecDeque::new();
    let mut backlog = false;
    while !*stopped.borrow() {
        while running.try_join_next().is_some() {}
        start_ahead(&shared, queue, &slots, &mut ahead, &mut running);
        // `None`: every slot is busy, so only a freed slot (or the stop) matters.
        let mut wait = None;
        let free = slots.available_permits();
        if ahead.is_empty() && (free > 0 || backlog) {
            let pool = shared.state.db.pool();
            // Slots freed meanwhile are filled together, by one claim.
            let limit = free + if backlog { concurrency } else { 0 };
            match queue::claim(pool, &claim, i64::try_from(limit).unwrap_or(i64::MAX)).await {
                Ok(jobs) => {
                    backlog = jobs.len() == limit;
                    ahead.extend(jobs.into_iter().map(|job| (Held::new(&shared, &job), job)));
                    start_ahead(&shared, queue, &slots, &mut ahead, &mut running);
                }
                Err(err) => {
                    backlog = false;
                    tracing::warn!(queue, error = %err, "cannot claim jobs");
                }
            }
            if slots.available_permits() > 0 {
                wait = Some(config.poll_interval());
                if let Ok(Some(secs)) = queue::next_due(pool, &claim).await {
                    // Wake when the next job falls due. One that fell due since the claim, or
                    // that another worker is claiming now, is looked at again shortly.
                    let until = Duration::try_from_secs_f64(secs)
                        .ok()
                        .filter(|until| !until.is_zero())
                        .unwrap_or(RECHECK);
                    wait = wait.map(|poll| poll.min(until));
                }
            }
        }
        tokio::select! {
            changed = stopped.changed() => if changed.is_err() { break },
            _ = slots.acquire(), if wait.is_none() => {}
            () = wake.notified() => {}
            () = tokio::time::sleep(wait.unwrap_or_default()), if wait.is_some() => {}
        }
    }
    drain(&mut running, config.shutdown_timeout()).await;
}

/// Starts claimed jobs, oldest claim first, in the free slots (this loop alone takes slots).
fn start_ahead(
    shared: &Arc<Shared>,
    queue: &'static str,
    slots: &Arc<Semaphore>,
    ahead: &mut VecDeque<(Held, Claimed)>,
    running: &mut JoinSet<()>,
) {
    while !ahead.is_empty() {
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            return;
        };
        if let Some((held, job)) = ahead.pop_front() {
            running.spawn(run_job(shared.clone(), queue, job, held, slot));
        }
    }
}

/// Lets running jobs finish until `timeout`, then cancels the rest.
async fn drain(running: &mut JoinSet<()>, timeout: Duration) {
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    while !running.is_empty() {
        tokio::select! {
            _ = running.join_next() => {}
            () = &mut deadline => {
                running.shutdown().await;
            }
        }
    }
}

/// Runs one claimed job in `slot`, which it frees when its handler returns, then records the
/// outcome under the job's lease.
async fn run_job(shared: Arc<Shared>, queue: &'static str, job: Claimed, _held: Held, slot: OwnedSemaphorePermit) {
    let state = &shared.state;
    let labels = KindLabels {
        queue,
        kind: job.kind.clone(),
    };
    state.metrics.jobs.started(&labels);
    let started = Instant::now();
    let result = attempt(&shared, &job).await;
    let ran_for = started.elapsed();
    drop(slot);
    let pool = state.db.pool();
    let lost = || tracing::warn!(job = %job.id, kind = job.kind, "the job's lease was lost while it ran; its new holder decides");
    let outcome = match result {
        Ok(()) => match record_success(&shared, &job).await {
            Some(true) => Some(Outcome::Succeeded),
            Some(false) => {
                lost();
                None
            }
            // Logged by the recorder.
            None => None,
        },
        Err(failure) => {
            let config = &state.config.jobs;
            match queue::fail(
                pool,
                &job,
                shared.owner,
                &failure.message,
                failure.retry,
                config.backoff(),
            )
            .await
            {
                Ok(AfterFailure::Retrying) => {
                    tracing::warn!(job = %job.id, kind = job.kind, attempt = job.attempts, error = failure.message, "job failed; retrying later");
                    Some(Outcome::Failed)
                }
                Ok(AfterFailure::Dead) => {
                    tracing::error!(job = %job.id, kind = job.kind, attempt = job.attempts, error = failure.message, "job is dead");
                    Some(Outcome::Dead)
                }
                Ok(AfterFailure::LeaseLost) => {
                    lost();
                    None
                }
                Err(err) => {
                    tracing::error!(job = %job.id, error = %err, "cannot record a job's failure");
                    None
                }
            }
        }
    };
    if let Some(outcome) = outcome {
        state.metrics.jobs.finished(&labels, outcome, ran_for);
    }
}

/// Hands a success to [`record_successes`] and waits for it to be recorded.
async fn record_success(shared: &Shared, job: &Claimed) -> Option<bool> {
    let (recorded, answer) = oneshot::channel();
    let success = Success {
        job: (job.id, job.attempts),
        recorded,
    };
    shared.successes.send(success).ok()?;
    answer.await.ok()?
}

/// Records successes, one statement for all that arrived while the previous one ran: idle,
/// each job has a statement to itself; under load, a worker deletes its finished jobs in
/// batches instead of committing once for each.
async fn record_successes(shared: Arc<Shared>, mut successes: mpsc::UnboundedReceiver<Success>) {
    let mut batch = Vec::with_capacity(SUCCESSES_AT_ONCE);
    while successes.recv_many(&mut batch, SUCCESSES_AT_ONCE).await > 0 {
        let jobs: Vec<(Uuid, i32)> = batch.iter().map(|success| success.job).collect();
        let removed = match queue::succeed(shared.state.db.pool(), &jobs, shared.owner).await {
            Ok(removed) => Some(removed),
            Err(err) => {
                // Their leases run out and they run again: the price of at-least-once.
                tracing::error!(count = jobs.len(), error = %err, "cannot record the success of jobs");
                None
            }
        };
        for success in batch.drain(..) {
            let recorded = removed.as_ref().map(|removed| removed.contains(&success.job.0));
            let _ = success.recorded.send(recorded);
        }
    }
}

/// Runs the job's handler in a task of its own, so that a panic is only this attempt's.
async fn attempt(shared: &Shared, job: &Claimed) -> Result<(), Failure> {
    if job.attempts > job.max_attempts {
        return Err(Failure {
            message: "its worker stopped during the last attempt and the lease ran out".into(),
            retry: false,
        });
    }
    // Claims name only registered kinds.
    let Some(handler) = shared.registry.handler(&job.kind) else {
        return Err(Failure {
            message: format!("no handler for the kind {}", job.kind),
            retry: false,
        });
    };
    if handler.version != job.version {
        return Err(Failure {
            message: format!(
                "the payload is version {} of {} and this worker reads version {}",
                job.version, job.kind, handler.version
            ),
            retry: false,
        });
    }
    // Logs of the attempt name the job; its trace continues the request that enqueued it.
    let span = tracing::info_span!(
        "job",
        job = %job.id,
        kind = job.kind,
        attempt = job.attempts,
        otel.name = tracing::field::Empty
    );
    if let Some(traceparent) = &job.traceparent {
        span.record("otel.name", format!("job {}", job.kind));
        telemetry::follow(&span, traceparent);
    }
    let run = (handler.run)(job.payload.clone(), shared.state.clone()).instrument(span);
    let mut task = AbortOnDrop(tokio::spawn(run));
    match (&mut task.0).await {
        Ok(result) => result,
        Err(err) => Err(Failure {
            message: panic_message(err),
            retry: true,
        }),
    }
}

/// Cancels the handler's task when the attempt is cancelled (at the shutdown deadline).
struct AbortOnDrop(JoinHandle<Result<(), Failure>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn panic_message(err: tokio::task::JoinError) -> String {
    let Ok(panic) = err.try_into_panic() else {
        return "the job's task was cancelled".into();
    };
    let text = panic
        .downcast_ref::<&str>()
        .map(ToString::to_string)
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    format!("the job panicked: {text}")
}

/// Wakes a queue's loop when a job of it commits. Notifications sent while the listener was
/// away are lost, so a reconnect wakes every queue once; polling covers the time it is down.
async fn listen(shared: Arc<Shared>) {
    let wake_all = || shared.wake.values().for_each(Notify::notify_one);
    loop {
        let connected = async {
            let mut listener = PgListener::connect_with(shared.state.db.pool()).await?;
            listener.listen(CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        let mut listener = match connected.await {
            Ok(listener) => listener,
            Err(err) => {
                tracing::warn!(error = %err, "cannot listen for new jobs; polling instead");
                tokio::time::sleep(shared.state.config.jobs.poll_interval()).await;
                continue;
            }
        };
        wake_all();
        loop {
            match listener.try_recv().await {
                Ok(Some(notification)) => {
                    if let Some(wake) = shared.wake.get(notification.payload()) {
                        wake.notify_one();
                    }
                }
                Ok(None) => wake_all(),
                Err(err) => {
                    tracing::warn!(error = %err, "the job listener failed");
                    break;
                }
            }
        }
    }
}

async fn renew_leases(shared: Arc<Shared>) {
    let lease = shared.state.config.jobs.lease();
    let mut ticks = tokio::time::interval(lease / 3);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let held: Vec<(Uuid, i32)> = shared
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .copied()
            .collect();
        if held.is_empty() {
            continue;
        }
        if let Err(err) = queue::renew(shared.state.db.pool(), shared.owner, &held, lease).await {
            tracing::warn!(error = %err, "cannot renew job leases");
        }
    }
}

async fn read_depths(shared: Arc<Shared>) {
    let mut ticks = tokio::time::interval(DEPTHS_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match queue::depths(shared.state.db.pool()).await {
            Ok(depths) => shared
                .state
                .metrics
                .jobs
                .set_depths(shared.wake.keys().copied(), &depths),
            Err(err) => tracing::warn!(error = %err, "cannot read the queue depths"),
        }
    }
}
