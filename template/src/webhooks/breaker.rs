//! A circuit breaker per destination (host and port): after `failures` consecutive failed
//! deliveries the circuit opens and deliveries there fail at once, without a request, until
//! the open period has passed; then one trial request goes out (half open), and its outcome
//! closes the circuit or opens it again. A dead receiver then costs its retries nothing.
//! Each destination's state is a gauge, so a dashboard shows which ones are down.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DestinationLabels {
    pub destination: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Circuit {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// A trial request is out since then; if it never reports back (its task ended), another
    /// trial may go once the open period has passed again.
    HalfOpen {
        since: Instant,
    },
}

impl Circuit {
    /// The gauge's value: 0 closed, 1 half open, 2 open.
    fn level(self) -> i64 {
        match self {
            Self::Closed { .. } => 0,
            Self::HalfOpen { .. } => 1,
            Self::Open { .. } => 2,
        }
    }
}

#[derive(Debug)]
pub struct Breakers {
    failures: u32,
    open_for: Duration,
    circuits: Mutex<HashMap<String, Circuit>>,
    states: Family<DestinationLabels, Gauge>,
}

impl Breakers {
    pub fn new(failures: u32, open_for: Duration, states: Family<DestinationLabels, Gauge>) -> Self {
        Self {
            failures,
            open_for,
            circuits: Mutex::default(),
            states,
        }
    }

    /// Whether a request may go to `destination` now; when not, how long until a trial may.
    pub fn admit(&self, destination: &str, now: Instant) -> Result<(), Duration> {
        let mut circuits = self.circuits.lock().expect("breakers lock");
        let circuit = circuits
            .entry(destination.to_owned())
            .or_insert(Circuit::Closed { failures: 0 });
        let trial_at = match *circuit {
            Circuit::Closed { .. } => return Ok(()),
            Circuit::Open { until } => until,
            Circuit::HalfOpen { since } => since + self.open_for,
        };
        if now < trial_at {
            return Err(trial_at - now);
        }
        *circuit = Circuit::HalfOpen { since: now };
        self.publish(destination, *circuit);
        Ok(())
    }

    /// Records the outcome of a request that [`Self::admit`] let through.
    pub fn record(&self, destination: &str, succeeded: bool, now: Instant) {
        let mut circuits = self.circuits.lock().expect("breakers lock");
        let current = circuits
            .get(destination)
            .copied()
            .unwrap_or(Circuit::Closed { failures: 0 });
        let next = match current {
            _ if succeeded => Circuit::Closed { failures: 0 },
            Circuit::Closed { failures } if failures + 1 < self.failures => Circuit::Closed { failures: failures + 1 },
            _ => Circuit::Open {
                until: now + self.open_for,
            },
        };
        if next == (Circuit::Closed { failures: 0 }) {
            // Healthy destinations take no memory.
            circuits.remove(destination);
        } else {
            circuits.insert(destination.to_owned(), next);
        }
        self.publish(destination, next);
    }

    fn publish(&self, destination: &str, circuit: Circuit) {
        self.states
            .get_or_create(&DestinationLabels {
                destination: destination.to_owned(),
            })
            .set(circuit.level());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPEN: Duration = Duration::from_mins(1);

    fn breakers() -> Breakers {
        Breakers::new(3, OPEN, Family::default())
    }

    fn level(breakers: &Breakers, destination: &str) -> i64 {
        breakers
            .states
            .get_or_create(&DestinationLabels {
                destination: destination.to_owned(),
            })
            .get()
    }

    #[test]
    fn opens_after_consecutive_failures_then_lets_one_trial_through() {
        let breakers = breakers();
        let start = Instant::now();
        for _ in 0..2 {
            assert!(breakers.admit("a:443", start).is_ok());
            breakers.record("a:443", false, start);
        }
        assert!(breakers.admit("a:443", start).is_ok(), "two failures keep it closed");
        breakers.record("a:443", false, start);

        assert_eq!(
            breakers.admit("a:443", start + Duration::from_secs(59)),
            Err(Duration::from_secs(1))
        );
        assert_eq!(level(&breakers, "a:443"), 2);
        assert!(breakers.admit("b:443", start).is_ok(), "per destination");
        assert!(breakers.admit("a:443", start + OPEN).is_ok(), "the trial");
        assert_eq!(level(&breakers, "a:443"), 1);
        assert!(breakers.admit("a:443", start + OPEN).is_err(), "one trial at a time");
        breakers.record("a:443", true, start + OPEN);
        assert!(breakers.admit("a:443", start + OPEN).is_ok(), "closed again");
        assert_eq!(level(&breakers, "a:443"), 0);
    }

    #[test]
    fn a_failed_trial_opens_it_again_and_a_success_resets_the_count() {
        let breakers = breakers();
        let start = Instant::now();
        breakers.record("a:443", false, start);
        breakers.record("a:443", false, start);
        breakers.record("a:443", true, start);
        breakers.record("a:443", false, start);
        breakers.record("a:443", false, start);
        assert!(breakers.admit("a:443", start).is_ok(), "the success reset the count");

        breakers.record("a:443", false, start);
        let trial = start + OPEN;
        assert!(breakers.admit("a:443", trial).is_ok());
        breakers.record("a:443", false, trial);
        assert!(breakers.admit("a:443", trial + Duration::from_secs(1)).is_err());
        assert!(breakers.admit("a:443", trial + OPEN).is_ok());
    }

    #[test]
    fn a_trial_that_never_reports_lets_another_through_later() {
        let breakers = breakers();
        let start = Instant::now();
        for _ in 0..3 {
            breakers.record("a:443", false, start);
        }
        assert!(breakers.admit("a:443", start + OPEN).is_ok());

        assert!(breakers.admit("a:443", start + OPEN + Duration::from_secs(1)).is_err());
        assert!(breakers.admit("a:443", start + OPEN * 2).is_ok());
    }
}
