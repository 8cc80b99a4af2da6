//! What every handler can reach: cheap to clone, shared behind `Arc`s.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::config::Config;
use crate::db::Database;
use crate::metrics::Metrics;

#[derive(Debug, Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub db: Database,
    pub metrics: Arc<Metrics>,
    pub lifecycle: Arc<Lifecycle>,
}

impl AppState {
    pub fn new(config: Config, db: Database) -> Self {
        Self {
            config: Arc::new(config),
            db,
            metrics: Arc::new(Metrics::default()),
            lifecycle: Arc::new(Lifecycle::default()),
        }
    }
}

/// Whether the process is draining: once a shutdown starts, readiness fails so that load
/// balancers stop sending traffic while in-flight requests finish.
#[derive(Debug, Default)]
pub struct Lifecycle {
    draining: AtomicBool,
}

impl Lifecycle {
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }
}
