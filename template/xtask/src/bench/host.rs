//! What the benchmark reads from and does to the processes it measures, through Linux's
//! `/proc` and `taskset`: CPU time, resident memory, and which cores they run on. Elsewhere
//! these figures are left out and nothing is pinned.

use std::path::Path;
use std::time::Duration;

use xshell::{Shell, cmd};

/// CPU time a process has used so far, every thread included (the ones that ended too).
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name, in parentheses, may hold spaces: the fields follow its closing one.
    // After it, `utime` and `stime` are the 12th and 13th, in clock ticks.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_micros(ticks * 1_000_000 / clock_ticks_per_sec()))
}

/// The CPU time of `pids` together; `None` when none of them can be read.
pub fn total_cpu_time(pids: &[u32]) -> Option<Duration> {
    pids.iter()
        .filter_map(|&pid| cpu_time(pid))
        .reduce(|sum, time| sum + time)
}

/// Resident memory of a process, in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// `pid` and every process descended from it, such as PostgreSQL's backends under its
/// postmaster.
pub fn with_descendants(pid: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(child) = entry.file_name().to_str().and_then(|name| name.parse().ok()) else {
            continue;
        };
        let parent = std::fs::read_to_string(entry.path().join("stat"))
            .ok()
            .and_then(|stat| stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok());
        if let Some(parent) = parent {
            parents.push((child, parent));
        }
    }
    let mut family = vec![pid];
    let mut index = 0;
    while let Some(&member) = family.get(index) {
        family.extend(
            parents
                .iter()
                .filter(|(_, parent)| *parent == member)
                .map(|(child, _)| *child),
        );
        index += 1;
    }
    family
}

/// USER_HZ, the unit of `/proc`'s CPU times.
fn clock_ticks_per_sec() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|output| String::from_utf8_lossy(&output.stdout).trim().parse().ok())
            .filter(|ticks| *ticks > 0)
            .unwrap_or(100)
    })
}

/// Which cores the measured side (the service, hello-world, PostgreSQL) and the load
/// generator get. With one core, or without `taskset`, nothing is pinned and both share.
#[derive(Debug, Clone)]
pub struct Placement {
    pub server_cpus: Option<String>,
    pub load_cpus: Option<String>,
    /// wrk threads: one per core the load generator has.
    pub load_threads: usize,
}

impl Placement {
    pub fn detect(sh: &Shell) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let taskset = cmd!(sh, "taskset -V")
            .quiet()
            .ignore_stdout()
            .ignore_stderr()
            .run()
            .is_ok();
        if cores < 2 || !taskset || !Path::new("/proc/self/stat").exists() {
            return Self {
                server_cpus: None,
                load_cpus: None,
                load_threads: 2,
            };
        }
        let half = cores / 2;
        Self {
            server_cpus: Some(format!("0-{}", half - 1)),
            load_cpus: Some(format!("{half}-{}", cores - 1)),
            load_threads: cores - half,
        }
    }

    pub fn describe(&self) -> String {
        match (&self.server_cpus, &self.load_cpus) {
            (Some(server), Some(load)) => format!("service and database on CPU {server}, wrk on CPU {load}"),
            _ => "not pinned: one core, or no taskset".to_owned(),
        }
    }
}

/// `program` to be run on `cpus` when given.
pub fn pinned(program: &Path, cpus: Option<&str>) -> std::process::Command {
    match cpus {
        Some(cpus) => {
            let mut command = std::process::Command::new("taskset");
            command.args(["--cpu-list", cpus]).arg(program);
            command
        }
        None => std::process::Command::new(program),
    }
}

/// Moves `pid` and its descendants (threads included) onto `cpus` until dropped, when they
/// go back to where they were. Processes forked later inherit the placement of their parent.
pub struct Pinned<'a> {
    sh: &'a Shell,
    restore: Vec<(u32, String)>,
}

impl<'a> Pinned<'a> {
    /// Processes that end meanwhile (a backend closing its connection) are passed over.
    pub fn new(sh: &'a Shell, pid: u32, cpus: &str) -> Self {
        let mut restore = Vec::new();
        for pid in with_descendants(pid) {
            let id = pid.to_string();
            // "pid 42's current affinity list: 0,1"
            let Ok(before) = cmd!(sh, "taskset --cpu-list --pid {id}").quiet().ignore_stderr().read() else {
                continue;
            };
            let Some((_, list)) = before.rsplit_once(": ") else {
                continue;
            };
            let moved = cmd!(sh, "taskset --all-tasks --cpu-list --pid {cpus} {id}")
                .quiet()
                .ignore_stdout()
                .ignore_stderr()
                .run();
            if moved.is_ok() {
                restore.push((pid, list.trim().to_owned()));
            }
        }
        Self { sh, restore }
    }
}

impl Drop for Pinned<'_> {
    fn drop(&mut self) {
        let sh = self.sh;
        for (pid, cpus) in &self.restore {
            let pid = pid.to_string();
            let _ = cmd!(sh, "taskset --all-tasks --cpu-list --pid {cpus} {pid}")
                .quiet()
                .ignore_stdout()
                .ignore_stderr()
                .run();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_cpu_time_memory_and_a_family() {
        if !Path::new("/proc/self/stat").exists() {
            return;
        }
        let me = std::process::id();
        let start = cpu_time(me).expect("readable");
        let mut spin = 0u64;
        let until = std::time::Instant::now() + Duration::from_millis(200);
        while std::time::Instant::now() < until {
            spin = spin.wrapping_add(1);
        }
        assert!(spin > 0);
        assert!(cpu_time(me).expect("readable") > start);
        assert!(rss_kib(me).expect("readable") > 0);
        assert_eq!(with_descendants(me)[0], me);
        assert!(total_cpu_time(&[me, u32::MAX]).is_some());
        assert!(total_cpu_time(&[u32::MAX]).is_none());
    }
}
