//! Background jobs against a real database: enqueueing inside a transaction, waking, retries
//! and dead jobs, panics, leases, per-queue concurrency and claims ahead, uniqueness, delays,
//! schedules across workers, shutdown, the metrics, the built-in prune, and the `worker` and
//! `jobs` subcommands of the binary (a schedule once per tick across two worker processes among
//! them); and a claim on a long backlog, which reads an index, not the table.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use serde::{Deserialize, Serialize};
use service::AppState;
use service::jobs::{self, EnqueueError, Job, JobsConfig, Options, PruneDeadJobs, Registry, Worker, queue};
use sqlx::PgPool;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::helpers::{TestApp, eventually, http_client};
use crate::process::{RunToExit, binary, config_dir, free_port, running, stderr_of, terminate, wait_until_live};

/// Records each attempt in `job_runs`; the first `failures` attempts fail (or panic), and each
/// takes `sleep_ms`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Record {
    label: String,
    failures: i64,
    panic: bool,
    sleep_ms: u64,
}

impl Job for Record {
    const KIND: &'static str = "record";
    const MAX_ATTEMPTS: i32 = 3;

    async fn run(self, state: AppState) -> anyhow::Result<()> {
        let attempt: i64 = sqlx::query_scalar(
            "WITH run AS (INSERT INTO job_runs (label) VALUES ($1)) \
             SELECT count(*) + 1 FROM job_runs WHERE label = $1",
        )
        .bind(&self.label)
        .fetch_one(state.db.pool())
        .await?;
        tokio::time::sleep(Duration::from_millis(self.sleep_ms)).await;
        if attempt <= self.failures {
            assert!(!self.panic, "attempt {attempt} of {} panics", self.label);
            anyhow::bail!("attempt {attempt} of {} fails", self.label);
        }
        Ok(())
    }
}

fn record(label: &str) -> Record {
    Record {
        label: label.into(),
        ..Record::default()
    }
}

/// Settings that make tests quick: a poll too slow to matter, so that only a notification can
/// wake a worker in time, a short lease, and short retries.
fn quick(config: &mut service::config::Config) {
    config.jobs = JobsConfig {
        poll_interval_ms: 60_000,
        lease_ms: 1_000,
        retry_base_ms: 10,
        retry_max_secs: 1,
        shutdown_timeout_secs: 1,
        ..JobsConfig::default()
    };
}

async fn spawn() -> TestApp {
    spawn_with(|_| {}).await
}

/// A service with [`quick`] settings, changed by `configure`, and a `job_runs` table.
async fn spawn_with(configure: impl FnOnce(&mut service::config::Config)) -> TestApp {
    let app = TestApp::spawn_with(
        |config| {
            quick(config);
            configure(config);
        },
        Router::new(),
    )
    .await;
    sqlx::query("CREATE TABLE job_runs (label text NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp())")
        .execute(pool(&app))
        .await
        .expect("create job_runs");
    app
}

fn pool(app: &TestApp) -> &PgPool {
    app.state.db.pool()
}

fn worker(app: &TestApp) -> Worker {
    Worker::start_with(app.state.clone(), Registry::default().with::<Record>()).expect("start the worker")
}

async fn enqueue(app: &TestApp, job: &Record, options: Options) -> Option<Uuid> {
    let mut conn = pool(app).acquire().await.expect("connection");
    jobs::enqueue(&mut conn, job, options).await.expect("enqueue")
}

async fn runs(app: &TestApp, label: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM job_runs WHERE label = $1")
        .bind(label)
        .fetch_one(pool(app))
        .await
        .expect("count runs")
}

/// Jobs in the table, in `state` or in any.
async fn job_count(app: &TestApp, state: Option<&str>) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM jobs WHERE state = coalesce($1, state)")
        .bind(state)
        .fetch_one(pool(app))
        .await
        .expect("count jobs")
}

#[tokio::test]
async fn a_job_lands_with_the_write_that_committed_it_and_not_with_one_rolled_back() {
    let app = spawn().await;

    let mut tx = app.state.db.begin().await.expect("begin");
    jobs::enqueue(&mut tx, &record("rolled-back"), Options::default())
        .await
        .expect("enqueue");
    tx.rollback().await.expect("rollback");
    let mut tx = app.state.db.begin().await.expect("begin");
    jobs::enqueue(&mut tx, &record("committed"), Options::default())
        .await
        .expect("enqueue");
    assert_eq!(job_count(&app, None).await, 0, "visible before the commit");
    tx.commit().await.expect("commit");

    let worker = worker(&app);
    eventually("the committed job ran", || async { runs(&app, "committed").await == 1 }).await;
    eventually("it is deleted", || async { job_count(&app, None).await == 0 }).await;
    worker.stop().await;
    assert_eq!(runs(&app, "rolled-back").await, 0);
}

#[tokio::test]
async fn a_new_job_wakes_an_idle_worker_long_before_its_poll() {
    let app = spawn().await;
    let worker = worker(&app);
    // Let the worker go idle, waiting on its 60 s poll.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let enqueued = Instant::now();
    enqueue(&app, &record("woken"), Options::default()).await;
    eventually("the job ran", || async { runs(&app, "woken").await == 1 }).await;

    assert!(enqueued.elapsed() < Duration::from_secs(2), "{:?}", enqueued.elapsed());
    worker.stop().await;
}

#[tokio::test]
async fn a_failing_job_is_retried_then_dead_with_its_last_error_and_counted() {
    let app = spawn().await;
    let failing = Record {
        failures: 10,
        ..record("failing")
    };
    let id = enqueue(&app, &failing, Options::default()).await.expect("enqueued");
    let worker = worker(&app);

    eventually("the job is dead", || async { job_count(&app, Some("dead")).await == 1 }).await;
    worker.stop().await;

    assert_eq!(runs(&app, "failing").await, 3, "MAX_ATTEMPTS");
    let dead = queue::dead(pool(&app), 10).await.expect("list dead");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].id, id);
    assert_eq!(dead[0].attempts, 3);
    assert_eq!(dead[0].last_error.as_deref(), Some("attempt 3 of failing fails"));
    // Backoff with jitter: at least half of 10 ms, then of 20 ms, between the attempts.
    let gaps: Vec<f64> = sqlx::query_scalar(
        "SELECT extract(epoch FROM at - lag(at) OVER (ORDER BY at))::float8 FROM job_runs ORDER BY at OFFSET 1",
    )
    .fetch_all(pool(&app))
    .await
    .expect("gaps");
    assert!(gaps[0] >= 0.005 && gaps[1] >= 0.010, "{gaps:?}");
    let metrics = app.get("/metrics").await.text().await.expect("metrics");
    for line in [
        r#"jobs_started_total{queue="default",kind="record"} 3"#,
        r#"jobs_failed_total{queue="default",kind="record"} 2"#,
        r#"jobs_dead_total{queue="default",kind="record"} 1"#,
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }
}

#[tokio::test]
async fn a_panicking_job_is_a_failed_attempt_and_the_worker_runs_on() {
    let app = spawn().await;
    let panicking = Record {
        failures: 1,
        panic: true,
        ..record("panicking")
    };
    enqueue(&app, &panicking, Options::default()).await;
    let worker = worker(&app);

    eventually("the second attempt succeeded", || async {
        job_count(&app, None).await == 0
    })
    .await;
    assert_eq!(runs(&app, "panicking").await, 2);
    enqueue(&app, &record("after"), Options::default()).await;
    eventually("a later job ran", || async { runs(&app, "after").await == 1 }).await;
    worker.stop().await;
    let metrics = app.get("/metrics").await.text().await.expect("metrics");
    assert!(
        metrics.contains(r#"jobs_succeeded_total{queue="default",kind="record"} 2"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_job_whose_worker_died_runs_again_once_its_lease_ran_out() {
    let app = spawn().await;
    // What a killed worker leaves: running jobs under a lease nobody renews.
    for (label, attempts) in [("orphan", 1), ("orphan-last", 3)] {
        sqlx::query(
            "INSERT INTO jobs (id, queue, kind, version, payload, state, attempts, max_attempts, run_at, lease_owner, lease_until) \
             VALUES ($1, 'default', 'record', 1, $2, 'running', $3, 3, now(), $4, now() + interval '300 milliseconds')",
        )
        .bind(Uuid::now_v7())
        .bind(serde_json::to_value(record(label)).expect("json"))
        .bind(attempts)
        .bind(Uuid::new_v4())
        .execute(pool(&app))
        .await
        .expect("insert");
    }
    let worker = worker(&app);

    eventually("the orphan ran", || async { runs(&app, "orphan").await == 1 }).await;
    eventually("the last attempt's orphan is dead", || async {
        job_count(&app, Some("dead")).await == 1
    })
    .await;
    worker.stop().await;
    assert_eq!(runs(&app, "orphan-last").await, 0);
    let dead = queue::dead(pool(&app), 10).await.expect("list dead");
    assert_eq!(
        dead[0].last_error.as_deref(),
        Some("its worker stopped during the last attempt and the lease ran out")
    );
}

#[tokio::test]
async fn a_success_that_could_not_be_recorded_runs_again_once_its_lease_ran_out() {
    let app = spawn().await;
    // The first delete from `jobs` fails, as when the database goes away at that moment.
    sqlx::raw_sql(
        "CREATE SEQUENCE deletes; \
         CREATE FUNCTION refuse_the_first_delete() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
             IF nextval('deletes') = 1 THEN RAISE EXCEPTION 'the database went away'; END IF; \
             RETURN OLD; \
         END $$; \
         CREATE TRIGGER refuse_the_first_delete BEFORE DELETE ON jobs \
             FOR EACH ROW EXECUTE FUNCTION refuse_the_first_delete()",
    )
    .execute(pool(&app))
    .await
    .expect("create the trigger");
    let worker = worker(&app);

    enqueue(&app, &record("unrecorded"), Options::default()).await;
    // Held for as long as the worker lived, the job would never run again.
    eventually("the job ran again and its success was recorded", || async {
        job_count(&app, None).await == 0
    })
    .await;
    worker.stop().await;

    assert_eq!(runs(&app, "unrecorded").await, 2);
}

#[tokio::test]
async fn a_long_job_keeps_its_lease_and_runs_once() {
    let app = spawn().await;
    // Two and a half leases long: without renewal, the second worker would claim it again.
    let long = Record {
        sleep_ms: 2_500,
        ..record("long")
    };
    enqueue(&app, &long, Options::default()).await;
    let (first, second) = (worker(&app), worker(&app));

    eventually("the job finished", || async { job_count(&app, None).await == 0 }).await;
    first.stop().await;
    second.stop().await;
    assert_eq!(runs(&app, "long").await, 1);
}

#[tokio::test]
async fn two_workers_run_each_of_many_jobs_exactly_once() {
    let app = spawn().await;
    let (first, second) = (worker(&app), worker(&app));

    let mut tx = app.state.db.begin().await.expect("begin");
    for number in 0..60 {
        jobs::enqueue(&mut tx, &record(&format!("many-{number}")), Options::default())
            .await
            .expect("enqueue");
    }
    tx.commit().await.expect("commit");

    eventually("every job ran", || async { job_count(&app, None).await == 0 }).await;
    first.stop().await;
    second.stop().await;
    let counts: Vec<(String, i64)> = sqlx::query_as("SELECT label, count(*) FROM job_runs GROUP BY label")
        .fetch_all(pool(&app))
        .await
        .expect("runs");
    assert_eq!(counts.len(), 60);
    assert!(counts.iter().all(|(_, runs)| *runs == 1), "{counts:?}");
}

/// Counts how many of its attempts run at once (only one test enqueues it).
#[derive(Serialize, Deserialize)]
struct Overlap {}

static OVERLAPPING: AtomicUsize = AtomicUsize::new(0);
static MOST_OVERLAPPING: AtomicUsize = AtomicUsize::new(0);

impl Job for Overlap {
    const KIND: &'static str = "overlap";
    const QUEUE: &'static str = "overlap";

    async fn run(self, _state: AppState) -> anyhow::Result<()> {
        let now = OVERLAPPING.fetch_add(1, Ordering::SeqCst) + 1;
        MOST_OVERLAPPING.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(50)).await;
        OVERLAPPING.fetch_sub(1, Ordering::SeqCst);
        Ok(())
    }
}

#[tokio::test]
async fn a_queue_runs_as_many_jobs_at_once_as_its_concurrency_and_no_more() {
    let app = spawn_with(|config| {
        config.jobs.concurrency.insert(Overlap::QUEUE.into(), 3);
    })
    .await;
    let mut tx = app.state.db.begin().await.expect("begin");
    for _ in 0..12 {
        jobs::enqueue(&mut tx, &Overlap {}, Options::default())
            .await
            .expect("enqueue");
    }
    tx.commit().await.expect("commit");

    let worker = Worker::start_with(app.state.clone(), Registry::default().with::<Overlap>()).expect("start");
    eventually("every job ran", || async { job_count(&app, None).await == 0 }).await;
    worker.stop().await;
    // Twelve jobs of 50 ms each: three at a time fill every slot, a fourth would overstep.
    assert_eq!(MOST_OVERLAPPING.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_dedupe_key_keeps_one_pending_job_and_frees_once_it_ran() {
    let app = spawn().await;
    let unique = || Options {
        dedupe_key: Some("report-2026-03".into()),
        ..Options::default()
    };

    let first = enqueue(&app, &record("unique"), unique()).await;
    let second = enqueue(&app, &record("unique"), unique()).await;
    assert!(first.is_some());
    assert_eq!(second, None);
    let worker = worker(&app);
    eventually("it ran", || async { job_count(&app, None).await == 0 }).await;
    let third = enqueue(&app, &record("unique"), unique()).await;
    assert!(third.is_some() && third != first);
    eventually("it ran again", || async { runs(&app, "unique").await == 2 }).await;
    worker.stop().await;
}

#[tokio::test]
async fn a_delayed_job_waits_for_its_time() {
    let app = spawn().await;
    let worker = worker(&app);
    let run_at = OffsetDateTime::now_utc() + Duration::from_millis(1_200);

    enqueue(
        &app,
        &record("delayed"),
        Options {
            run_at: Some(run_at),
            ..Options::default()
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(runs(&app, "delayed").await, 0, "ran early");
    eventually("it ran", || async { runs(&app, "delayed").await == 1 }).await;
    worker.stop().await;

    let at: OffsetDateTime = sqlx::query_scalar("SELECT at FROM job_runs")
        .fetch_one(pool(&app))
        .await
        .expect("run time");
    assert!(at >= run_at, "{at} before {run_at}");
    assert!(at - run_at < Duration::from_secs(1), "{at} long after {run_at}");
}

#[tokio::test]
async fn a_schedule_runs_once_per_tick_however_many_workers_run() {
    let app = spawn().await;
    let registry = || Registry::default().every("* * * * * *", record("ticks"));
    let workers = [
        Worker::start_with(app.state.clone(), registry()).expect("start"),
        Worker::start_with(app.state.clone(), registry()).expect("start"),
        Worker::start_with(app.state.clone(), registry()).expect("start"),
    ];

    tokio::time::sleep(Duration::from_millis(3_500)).await;
    for worker in workers {
        worker.stop().await;
    }
    // Three or four ticks in 3.5 s; three workers running each would make nine or more.
    let runs = runs(&app, "ticks").await;
    assert!((2..=4).contains(&runs), "{runs} runs");
    let per_second: Vec<i64> =
        sqlx::query_scalar("SELECT count(*) FROM job_runs GROUP BY date_trunc('second', at) ORDER BY 1 DESC")
            .fetch_all(pool(&app))
            .await
            .expect("per second");
    assert_eq!(per_second[0], 1, "{per_second:?}");
}

#[tokio::test]
async fn a_payload_that_no_longer_reads_is_dead_at_once_with_a_clear_error() {
    let app = spawn().await;
    let reshaped = enqueue(&app, &record("reshaped"), Options::default())
        .await
        .expect("id");
    let versioned = enqueue(&app, &record("versioned"), Options::default())
        .await
        .expect("id");
    sqlx::query("UPDATE jobs SET payload = '{\"label\": 7}' WHERE id = $1")
        .bind(reshaped)
        .execute(pool(&app))
        .await
        .expect("reshape");
    sqlx::query("UPDATE jobs SET version = 2 WHERE id = $1")
        .bind(versioned)
        .execute(pool(&app))
        .await
        .expect("bump the version");
    let worker = worker(&app);

    eventually("both are dead", || async { job_count(&app, Some("dead")).await == 2 }).await;
    worker.stop().await;
    let dead = queue::dead(pool(&app), 10).await.expect("list dead");
    let error_of = |id| {
        dead.iter()
            .find(|job| job.id == id)
            .and_then(|job| job.last_error.clone())
            .unwrap_or_default()
    };
    assert!(
        error_of(reshaped)
            .starts_with("the payload does not deserialize as record version 1: invalid type: integer `7`"),
        "{}",
        error_of(reshaped)
    );
    assert_eq!(
        error_of(versioned),
        "the payload is version 2 of record and this worker reads version 1"
    );
    assert!(dead.iter().all(|job| job.attempts == 1), "no retries: {dead:?}");
    assert_eq!(runs(&app, "reshaped").await + runs(&app, "versioned").await, 0);
}

#[tokio::test]
async fn an_oversized_payload_is_refused_and_nothing_is_stored() {
    let app = spawn().await;
    let mut conn = pool(&app).acquire().await.expect("connection");

    let huge = record(&"x".repeat(jobs::MAX_PAYLOAD_BYTES));
    let err = jobs::enqueue(&mut conn, &huge, Options::default())
        .await
        .expect_err("too large");

    assert!(matches!(err, EnqueueError::TooLarge { .. }), "{err}");
    assert!(err.to_string().ends_with("exceeds the limit of 65536"), "{err}");
    assert_eq!(job_count(&app, None).await, 0);
}

#[tokio::test]
async fn stopping_lets_running_jobs_finish_and_hands_back_those_past_the_deadline() {
    let app = spawn().await;
    let quick_one = Record {
        sleep_ms: 200,
        ..record("finishes")
    };
    let slow_one = Record {
        sleep_ms: 60_000,
        ..record("handed-back")
    };
    enqueue(&app, &quick_one, Options::default()).await;
    let slow = enqueue(&app, &slow_one, Options::default()).await.expect("id");
    let worker = worker(&app);
    eventually("both started", || async { job_count(&app, Some("running")).await == 2 }).await;

    let stopping = Instant::now();
    worker.stop().await;

    // The shutdown timeout is 1 s.
    assert!(stopping.elapsed() < Duration::from_secs(3), "{:?}", stopping.elapsed());
    let left: Vec<(Uuid, String, i32)> = sqlx::query_as("SELECT id, state, attempts FROM jobs")
        .fetch_all(pool(&app))
        .await
        .expect("jobs");
    assert_eq!(
        left,
        vec![(slow, "ready".to_owned(), 0)],
        "the quick one finished, the slow one is back"
    );
}

#[tokio::test]
async fn with_a_backlog_a_worker_claims_one_batch_ahead_and_hands_it_back_unstarted_when_it_stops() {
    let app = spawn_with(|config| config.jobs.default_concurrency = 2).await;
    let mut tx = app.state.db.begin().await.expect("begin");
    for number in 0..6 {
        let slow = Record {
            sleep_ms: 60_000,
            ..record(&format!("backlog-{number}"))
        };
        jobs::enqueue(&mut tx, &slow, Options::default())
            .await
            .expect("enqueue");
    }
    tx.commit().await.expect("commit");
    let worker = worker(&app);

    // Two run in the two slots; two more wait, claimed, to start the moment a slot frees.
    eventually("a batch claimed ahead", || async {
        job_count(&app, Some("running")).await == 4
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(job_count(&app, Some("running")).await, 4, "one batch ahead, no more");
    let started: i64 = sqlx::query_scalar("SELECT count(*) FROM job_runs")
        .fetch_one(pool(&app))
        .await
        .expect("runs");
    assert_eq!(started, 2, "only as many started as there are slots");

    worker.stop().await;
    let left: Vec<(String, i32)> = sqlx::query_as("SELECT state, attempts FROM jobs")
        .fetch_all(pool(&app))
        .await
        .expect("jobs");
    assert_eq!(
        left,
        vec![("ready".to_owned(), 0); 6],
        "all handed back, no attempt used"
    );
}

/// A claim reads the head of the due jobs' index, however long the backlog, instead of scanning
/// and sorting every due job.
#[tokio::test]
async fn a_claim_on_a_long_backlog_scans_no_table() {
    let app = spawn().await;
    sqlx::query(
        "INSERT INTO jobs (id, queue, kind, version, payload, max_attempts, run_at) \
         SELECT gen_random_uuid(), 'default', 'record', 1, '{}', 3, now() - make_interval(secs => i) \
         FROM generate_series(1, 5000) AS i",
    )
    .execute(pool(&app))
    .await
    .expect("a backlog");
    sqlx::query("ANALYZE jobs").execute(pool(&app)).await.expect("analyze");
    let claim = queue::Claim {
        queue: "default",
        kinds: &["record"],
        owner: Uuid::new_v4(),
        lease: Duration::from_secs(30),
    };
    let mut tx = app.state.db.begin().await.expect("begin");
    let claimed = queue::claim(&mut *tx, &claim, 4).await.expect("claim");
    let table_scans: i64 = sqlx::query_scalar("SELECT pg_stat_get_xact_numscans('jobs'::regclass)")
        .fetch_one(&mut *tx)
        .await
        .expect("scans of this transaction");
    assert_eq!(claimed.len(), 4);
    assert_eq!(table_scans, 0, "the claim scanned the whole jobs table");
}

#[tokio::test]
async fn dead_jobs_are_retried_or_discarded_from_the_command_line() {
    let app = spawn().await;
    let mut ids = Vec::new();
    for label in ["to-retry", "to-discard"] {
        let failing = Record {
            failures: 3,
            ..record(label)
        };
        ids.push(enqueue(&app, &failing, Options::default()).await.expect("id"));
    }
    let worker = worker(&app);
    eventually("both are dead", || async { job_count(&app, Some("dead")).await == 2 }).await;
    let url = &app.database.url;
    let cli = |args: &[&str]| {
        binary(args)
            .env("DATABASE_URL", url)
            .env("APP_CONFIG_DIR", config_dir())
            .run_to_exit()
    };

    let listed = cli(&["jobs", "dead"]);
    let listing = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.status.success(), "{}", stderr_of(&listed));
    for id in &ids {
        assert!(listing.contains(&id.to_string()), "{listing}");
    }
    assert!(listing.contains("error=attempt 3 of to-retry fails"), "{listing}");

    assert!(cli(&["jobs", "retry", &ids[0].to_string()]).status.success());
    assert!(cli(&["jobs", "discard", &ids[1].to_string()]).status.success());
    // The retried job runs once more, its fourth attempt, and succeeds.
    eventually("the retried job ran", || async { runs(&app, "to-retry").await == 4 }).await;
    eventually("nothing is left", || async { job_count(&app, None).await == 0 }).await;
    worker.stop().await;

    let missing = cli(&["jobs", "retry", &ids[0].to_string()]);
    assert_eq!(missing.status.code(), Some(1));
    assert_eq!(stderr_of(&missing).trim(), format!("error: no dead job {}", ids[0]));
    let bad = cli(&["jobs", "discard", "not-an-id"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        stderr_of(&bad).contains("invalid value 'not-an-id'"),
        "{}",
        stderr_of(&bad)
    );
}

#[tokio::test]
async fn the_built_in_prune_deletes_only_old_dead_jobs() {
    let app = spawn().await;
    for (label, died) in [("old", "15 days"), ("recent", "1 day")] {
        sqlx::query(
            "INSERT INTO jobs (id, queue, kind, version, payload, state, attempts, max_attempts, run_at, updated_at) \
             VALUES ($1, 'default', 'record', 1, $2, 'dead', 3, 3, now(), now() - $3::interval)",
        )
        .bind(Uuid::now_v7())
        .bind(serde_json::to_value(record(label)).expect("json"))
        .bind(died)
        .execute(pool(&app))
        .await
        .expect("insert");
    }

    PruneDeadJobs.run(app.state.clone()).await.expect("prune");

    let left: Vec<String> = sqlx::query_scalar("SELECT payload ->> 'label' FROM jobs")
        .fetch_all(pool(&app))
        .await
        .expect("left");
    assert_eq!(left, ["recent"]);
}

#[tokio::test]
async fn the_worker_subcommand_runs_jobs_serves_its_probes_and_metrics_and_stops_on_sigterm() {
    // An app first, for its database.
    let app = spawn().await;
    let port = free_port();
    let child = running("worker", &app.database.url, port)
        .spawn()
        .expect("start the worker");
    wait_until_live(port).await;
    let client = http_client().build().expect("client");
    let get = |path: &str| client.get(format!("http://127.0.0.1:{port}{path}")).send();

    assert_eq!(get("/health/ready").await.expect("ready").status(), 200);
    assert_eq!(
        get("/api/v1/anything").await.expect("api").status(),
        404,
        "no API in a worker"
    );
    eventually("the built-in schedule is registered", || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM job_schedules WHERE name = 'prune-dead-jobs'")
            .fetch_one(pool(&app))
            .await
            .expect("schedules")
            == 1
    })
    .await;
    eventually("the queue depth is in the metrics", || async {
        let metrics = get("/metrics").await.expect("metrics").text().await.expect("text");
        metrics.contains(r#"jobs{queue="default",state="ready"} 0"#)
    })
    .await;

    let (code, lines) = terminate(child).await;
    assert_eq!(code, Some(0));
    assert!(
        lines.iter().any(|line| line["message"] == "worker started"),
        "{lines:#?}"
    );
    assert!(
        lines.iter().any(|line| line["message"] == "worker stopped"),
        "{lines:#?}"
    );
}

#[tokio::test]
async fn a_schedule_runs_once_per_tick_across_two_worker_processes() {
    let app = spawn().await;
    let started = Instant::now();
    // The built-in prune, configured to tick every second.
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let port = free_port();
            let child = running("worker", &app.database.url, port)
                .env("APP_JOBS__SCHEDULES__PRUNE_DEAD_JOBS", "* * * * * *")
                .spawn()
                .expect("start a worker");
            (child, port)
        })
        .collect();
    for (_, port) in &workers {
        wait_until_live(*port).await;
    }
    tokio::time::sleep(Duration::from_millis(3_500)).await;

    let client = http_client().build().expect("client");
    let mut runs = 0;
    for (_, port) in &workers {
        let metrics = client
            .get(format!("http://127.0.0.1:{port}/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        runs += metrics
            .lines()
            .find_map(|line| line.strip_prefix(r#"jobs_succeeded_total{queue="default",kind="prune-dead-jobs"} "#))
            .map_or(0, |count| count.parse::<u64>().expect("a count"));
    }
    let ticks = started.elapsed().as_secs() + 1;
    for (child, _) in workers {
        assert_eq!(terminate(child).await.0, Some(0));
    }

    assert!((2..=ticks).contains(&runs), "{runs} runs in at most {ticks} ticks");
}
