-- Background jobs (src/jobs/). A job is a row: inserted in the transaction of the write that
-- causes it, claimed by a worker with `FOR UPDATE SKIP LOCKED`, held under a lease the worker
-- renews, deleted when it succeeds, and kept as `dead` with its last error when its attempts
-- run out. `job_schedules` holds the next tick of every cron schedule, so that however many
-- workers run, one of them enqueues each tick.

CREATE TABLE jobs (
    id           uuid        PRIMARY KEY,
    queue        text        NOT NULL,
    kind         text        NOT NULL,
    -- Of the payload's shape: a handler refuses a payload of another version.
    version      integer     NOT NULL,
    payload      jsonb       NOT NULL,
    state        text        NOT NULL DEFAULT 'ready',
    -- While a job with this key is ready or running, enqueueing another is a no-op.
    dedupe_key   text,
    attempts     integer     NOT NULL DEFAULT 0,
    max_attempts integer     NOT NULL,
    run_at       timestamptz NOT NULL,
    -- The worker holding the job, and until when; past it, any worker may claim the job again.
    lease_owner  uuid,
    lease_until  timestamptz,
    last_error   text,
    -- The W3C traceparent of the request that enqueued the job, so that its run continues
    -- that trace; NULL when traces are not exported.
    traceparent  text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT jobs_state_check CHECK (state IN ('ready', 'running', 'dead')),
    CONSTRAINT jobs_attempts_check CHECK (attempts >= 0 AND max_attempts > 0),
    CONSTRAINT jobs_lease_check CHECK ((state = 'running') = (lease_owner IS NOT NULL AND lease_until IS NOT NULL))
);

-- What workers claim: ready jobs that are due, and running ones whose lease ran out.
CREATE INDEX jobs_ready_idx ON jobs (queue, run_at) WHERE state = 'ready';
CREATE INDEX jobs_running_idx ON jobs (queue, lease_until) WHERE state = 'running';
-- Listing and pruning the dead.
CREATE INDEX jobs_dead_idx ON jobs (updated_at) WHERE state = 'dead';
CREATE UNIQUE INDEX jobs_dedupe_key_idx ON jobs (kind, dedupe_key) WHERE dedupe_key IS NOT NULL AND state <> 'dead';

-- Wakes the idle workers of the job's queue when the job commits, instead of at their next
-- poll; a job due later tells them when to look next. PostgreSQL sends one notification per
-- queue however many jobs a transaction adds.
CREATE FUNCTION announce_ready_job() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('jobs_ready', NEW.queue);
    RETURN NULL;
END
$$;

CREATE TRIGGER jobs_announce AFTER INSERT OR UPDATE OF state ON jobs
    FOR EACH ROW WHEN (NEW.state = 'ready')
    EXECUTE FUNCTION announce_ready_job();

CREATE TABLE job_schedules (
    name        text        PRIMARY KEY,
    -- The cron pattern the next tick was computed from; a changed pattern recomputes it.
    pattern     text        NOT NULL,
    next_run_at timestamptz NOT NULL
);
