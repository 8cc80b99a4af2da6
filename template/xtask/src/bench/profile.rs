//! `--profile`: records where the service spends its CPU time during one scenario, with
//! `perf` (call stacks unwound from DWARF, so no frame pointers are needed), and draws it as
//! a flame graph with inferno (installed on first use, at the version pinned here). The
//! benchmark then runs the `profiling` build: the release code, with symbols and line tables.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{Context, ensure};
use xshell::{Shell, cmd};

use crate::project;

const INFERNO_VERSION: &str = "0.12.8";

/// Samples per second: enough for a picture, few enough to leave the measurement alone.
const FREQUENCY: &str = "299";

/// Fails early, before the build and the load, when the tools are missing.
pub fn ensure_tools(sh: &Shell) -> anyhow::Result<()> {
    ensure!(
        cmd!(sh, "perf --version").quiet().ignore_stdout().run().is_ok(),
        "perf is missing; install it (apt-get install linux-perf) or leave out --profile"
    );
    project::ensure_cargo_tool(sh, "inferno", INFERNO_VERSION, "inferno-flamegraph", &[])
}

/// A `perf record` of one process, running until [`Recording::finish`].
pub struct Recording {
    perf: Child,
    data: PathBuf,
}

impl Recording {
    pub fn start(pid: u32, out: &Path) -> anyhow::Result<Self> {
        let data = out.join("perf.data");
        let perf = Command::new("perf")
            .args(["record", "--freq", FREQUENCY, "--call-graph", "dwarf,32768", "--pid"])
            .arg(pid.to_string())
            .arg("--output")
            .arg(&data)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start perf")?;
        Ok(Self { perf, data })
    }

    /// Stops recording and writes `flamegraph.svg` and `profile.txt` (the functions with the
    /// most CPU time of their own) next to `perf.data`.
    pub fn finish(mut self, sh: &Shell, title: &str) -> anyhow::Result<()> {
        let pid = self.perf.id().to_string();
        cmd!(sh, "kill -INT {pid}").quiet().run()?;
        let status = self.perf.wait()?;
        ensure!(self.data.is_file(), "perf recorded nothing ({status})");
        let data = &self.data;
        let out = data.parent().context("perf.data has a directory")?;
        let script = cmd!(sh, "perf script --input {data}")
            .quiet()
            .ignore_stderr()
            .output()?;
        let folded = cmd!(sh, "inferno-collapse-perf")
            .stdin(&script.stdout)
            .quiet()
            .output()?;
        let svg = cmd!(sh, "inferno-flamegraph --title {title}")
            .stdin(&folded.stdout)
            .quiet()
            .output()?;
        std::fs::write(out.join("flamegraph.svg"), svg.stdout)?;
        let report = cmd!(
            sh,
            "perf report --input {data} --no-children --stdio --sort symbol --percent-limit 1 -g none"
        )
        .quiet()
        .ignore_stderr()
        .read()?;
        std::fs::write(out.join("profile.txt"), &report)?;
        println!("profile: target/bench/flamegraph.svg, target/bench/profile.txt; the top costs:");
        for line in report
            .lines()
            .filter(|line| line.contains('%') && !line.starts_with('#'))
            .take(12)
        {
            println!("  {}", line.trim());
        }
        Ok(())
    }
}
