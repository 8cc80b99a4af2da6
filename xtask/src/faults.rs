//! A database restart under write load, from outside: clients keep creating projects while the
//! case's PostgreSQL stops as an operator stops it (`pg_ctl stop -m fast`: every session is
//! terminated, 57P01) and starts again. The service must answer every write 201 or 503, never
//! 500, must write again once the database is back, and lose none of the writes it confirmed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use anyhow::{Context, ensure};
use serde_json::Value;

use crate::dev_database::DevDatabase;
use crate::probe;

/// Concurrent writers: enough that some are mid-query when the sessions are terminated.
const WRITERS: usize = 8;

/// Writes through a restart of `database` to the service on `port` as the account of `token`.
pub fn check_restart(port: u16, token: &str, database: &DevDatabase) -> anyhow::Result<()> {
    let running = Arc::new(AtomicBool::new(true));
    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let running = Arc::clone(&running);
            let token = token.to_owned();
            thread::spawn(move || write_until_stopped(port, &token, writer, &running))
        })
        .collect();
    thread::sleep(Duration::from_millis(500));
    let restarted = database.restart(Duration::from_secs(1));
    // Writes after the restart show the service found its database again.
    thread::sleep(Duration::from_secs(2));
    running.store(false, Ordering::Relaxed);
    let mut answers = Vec::new();
    for writer in writers {
        let written = writer.join().map_err(|_| anyhow::anyhow!("a writer panicked"))??;
        ensure!(
            written.last().is_some_and(|(status, _)| *status == 201),
            "a writer's last write, after the restart, answered {:?}",
            written.last()
        );
        answers.extend(written);
    }
    restarted?;

    let unexpected: Vec<&(u16, String)> = answers
        .iter()
        .filter(|(status, _)| ![201, 503].contains(status))
        .collect();
    ensure!(
        unexpected.is_empty(),
        "writes during the restart answered other than 201 or 503: {unexpected:?}"
    );
    let refused = answers.iter().filter(|(status, _)| *status == 503).count();
    let created: Vec<&str> = answers
        .iter()
        .filter(|(status, _)| *status == 201)
        .map(|(_, id)| id.as_str())
        .collect();
    ensure!(
        refused > 0,
        "no write was refused: the database never went away during the check"
    );
    for id in &created {
        let (status, body) = probe::request(port, "GET", &format!("/api/v1/projects/{id}"), None, Some(token))?;
        ensure!(status == 200, "project {id}, answered 201, reads {status}: {body}");
    }
    println!(
        "{} writes during a database restart: {} created and all readable after it, {} refused with 503, none failed",
        answers.len(),
        created.len(),
        refused
    );
    Ok(())
}

/// Creates projects one after another until told to stop; each answer's status, and the new
/// project's id for a 201 (the error's text otherwise), in order.
fn write_until_stopped(
    port: u16,
    token: &str,
    writer: usize,
    running: &AtomicBool,
) -> anyhow::Result<Vec<(u16, String)>> {
    let mut answers = Vec::new();
    let mut n = 0;
    while running.load(Ordering::Relaxed) {
        n += 1;
        let body = format!(r#"{{"name":"restart {writer}-{n}"}}"#);
        let (status, text) = probe::request(port, "POST", "/api/v1/projects", Some(&body), Some(token))?;
        let id = if status == 201 {
            let project: Value = serde_json::from_str(&text)?;
            project["id"].as_str().context("a project without id")?.to_owned()
        } else {
            text
        };
        answers.push((status, id));
    }
    Ok(answers)
}
