//! The kinds of job a worker can run and the schedules it keeps, each typed [`Job`] reduced
//! to a function from its stored JSON to a future, so that one worker runs every kind.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde_json::Value;

use super::Job;
use crate::AppState;

/// Why an attempt failed, and whether another attempt could succeed.
#[derive(Debug)]
pub struct Failure {
    pub message: String,
    pub retry: bool,
}

type Run = fn(Value, AppState) -> Pin<Box<dyn Future<Output = Result<(), Failure>> + Send>>;

/// How to run one kind.
#[derive(Clone, Copy)]
pub struct Handler {
    pub queue: &'static str,
    pub version: i32,
    pub run: Run,
}

impl fmt::Debug for Handler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handler")
            .field("queue", &self.queue)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// A cron schedule: at each tick, one job of `kind` with the payload `payload` produces.
#[derive(Clone)]
pub struct Scheduled {
    pub kind: &'static str,
    pub queue: &'static str,
    pub version: i32,
    pub max_attempts: i32,
    /// Five fields (minute to weekday), or six with seconds first; in UTC.
    pub pattern: &'static str,
    pub payload: Arc<dyn Fn() -> serde_json::Result<String> + Send + Sync>,
}

impl fmt::Debug for Scheduled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scheduled")
            .field("kind", &self.kind)
            .field("pattern", &self.pattern)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Default)]
pub struct Registry {
    handlers: BTreeMap<&'static str, Handler>,
    schedules: Vec<Scheduled>,
}

impl Registry {
    /// Adds the kind `J`.
    #[must_use]
    pub fn with<J: Job>(mut self) -> Self {
        self.handlers.insert(
            J::KIND,
            Handler {
                queue: J::QUEUE,
                version: J::VERSION,
                run: run::<J>,
            },
        );
        self
    }

    /// Enqueues `job` at every tick of the cron `pattern` (UTC), once per tick however many
    /// workers run; a tick is skipped while the previous tick's job has not finished. Adds the
    /// kind `J` too, so that what is scheduled is also run. The pattern is checked when a
    /// worker starts.
    #[must_use]
    pub fn every<J: Job + Sync>(self, pattern: &'static str, job: J) -> Self {
        let mut registry = self.with::<J>();
        registry.schedules.push(Scheduled {
            kind: J::KIND,
            queue: J::QUEUE,
            version: J::VERSION,
            max_attempts: J::MAX_ATTEMPTS,
            pattern,
            payload: Arc::new(move || serde_json::to_string(&job)),
        });
        registry
    }

    pub fn handler(&self, kind: &str) -> Option<&Handler> {
        self.handlers.get(kind)
    }

    pub fn schedules(&self) -> &[Scheduled] {
        &self.schedules
    }

    /// Every queue a registered kind uses.
    pub fn queues(&self) -> BTreeSet<&'static str> {
        self.handlers.values().map(|handler| handler.queue).collect()
    }

    /// The kinds of `queue`.
    pub fn kinds(&self, queue: &str) -> Vec<&'static str> {
        self.handlers
            .iter()
            .filter(|(_, handler)| handler.queue == queue)
            .map(|(kind, _)| *kind)
            .collect()
    }
}

fn run<J: Job>(payload: Value, state: AppState) -> Pin<Box<dyn Future<Output = Result<(), Failure>> + Send>> {
    Box::pin(async move {
        let job: J = serde_json::from_value(payload).map_err(|err| Failure {
            message: format!(
                "the payload does not deserialize as {} version {}: {err}",
                J::KIND,
                J::VERSION
            ),
            retry: false,
        })?;
        job.run(state).await.map_err(|err| Failure {
            message: format!("{err:#}"),
            retry: true,
        })
    })
}
