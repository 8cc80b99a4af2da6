//! `cargo xtask demo`: generate the default service into `target/demo`, give it a PostgreSQL
//! of its own, migrate, serve, and print where to look. Ctrl-C stops the service and the
//! database; nothing is left running.

use std::net::TcpListener;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use xshell::{Cmd, Shell, cmd};

use crate::flags::Demo;
use crate::generate::{self, repo_root, shared_target_dir};
use crate::probe;

const NAME: &str = "demo-service";

pub fn run(demo: &Demo) -> anyhow::Result<()> {
    let sh = Shell::new()?;
    sh.set_var("RUST_BACKTRACE", "0");
    sh.set_var("CARGO_TARGET_DIR", shared_target_dir());
    if TcpListener::bind(("127.0.0.1", demo.port)).is_err() {
        bail!("port {} is in use; pick another with --port", demo.port);
    }
    generate::ensure_cargo_generate(&sh)?;
    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = interrupted.clone();
    // Ctrl-C reaches the service too (same process group), which drains and exits; this
    // process only has to outlive it to stop the database.
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst)).context("cannot handle Ctrl-C")?;

    let dest = repo_root().join("target").join("demo");
    let project = dest.join(NAME);
    if project.exists() {
        // A previous demo that was killed may have left its database running.
        {
            let _dir = sh.push_dir(&project);
            if let Err(err) = xtask(&sh).args(["db", "down", "--delete-data"]).run() {
                eprintln!("warning: could not stop the previous demo's database ({err}); starting over anyway");
            }
        }
        std::fs::remove_dir_all(&project)?;
    }
    println!("generating {NAME} into {}", project.display());
    generate::generate_ok(&sh, NAME, &[("http_port".to_owned(), demo.port.to_string())], &dest)?;

    let _dir = sh.push_dir(&project);
    println!("building (the first build compiles every dependency and takes a few minutes)");
    cmd!(sh, "cargo build --quiet").run()?;
    let db_port = probe::free_port()?.to_string();
    xtask(&sh).args(["db", "up", "--port", db_port.as_str()]).run()?;
    let served = serve(&sh, demo.port, &interrupted);
    let stopped = xtask(&sh).args(["db", "down", "--delete-data"]).run();
    served?;
    stopped?;
    Ok(())
}

/// `cargo xtask` in the demo service, whose migrations must use the database the demo
/// starts, not one a DATABASE_URL in the caller's environment names.
fn xtask(sh: &Shell) -> Cmd<'_> {
    cmd!(sh, "cargo xtask").env_remove("DATABASE_URL")
}

fn serve(sh: &Shell, port: u16, interrupted: &AtomicBool) -> anyhow::Result<()> {
    xtask(sh).args(["db", "migrate"]).run()?;
    let mut service = Command::new("cargo")
        .args(["run", "--quiet", "--", "serve"])
        .current_dir(sh.current_dir())
        .env("CARGO_TARGET_DIR", shared_target_dir())
        .env_remove("DATABASE_URL")
        .spawn()
        .context("cannot start the service")?;
    let ready = probe::wait_until_ready(port, Duration::from_mins(2), || {
        if interrupted.load(Ordering::SeqCst) {
            bail!("interrupted before the service was ready");
        }
        if let Some(status) = service.try_wait()? {
            bail!("the service exited before it was ready ({status})");
        }
        Ok(())
    });
    if let Err(err) = ready {
        let _ = service.kill();
        let _ = service.wait();
        return Err(err);
    }
    print_guide(&format!("http://127.0.0.1:{port}"));
    while !interrupted.load(Ordering::SeqCst) {
        if let Some(status) = service.try_wait()? {
            bail!("the service exited on its own ({status})");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    println!("\nstopping");
    let status = service.wait()?;
    println!("service stopped ({status})");
    Ok(())
}

fn print_guide(base: &str) {
    println!(
        r#"
{NAME} is running.

  API        {base}/api/v1/projects
  Swagger UI {base}/docs
  OpenAPI    {base}/openapi.json
  Metrics    {base}/metrics
  Health     {base}/health/live  {base}/health/ready

Try it: an account, a token, then the example resource as that account.

  curl -si {base}/api/v1/auth/register -H 'content-type: application/json' -d '{{"email":"ada@example.com","password":"correct horse battery staple"}}'
  TOKEN=$(curl -s {base}/api/v1/auth/login -H 'content-type: application/json' -d '{{"email":"ada@example.com","password":"correct horse battery staple"}}' | sed 's/.*"access_token":"\([^"]*\)".*/\1/')
  curl -si {base}/api/v1/projects -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' -d '{{"name":"Website relaunch"}}'
  curl -s '{base}/api/v1/projects?sort=name&limit=10' -H "authorization: Bearer $TOKEN"
  curl -si -X PATCH {base}/api/v1/projects/<id> -H "authorization: Bearer $TOKEN" -H 'if-match: "1"' -H 'content-type: application/json' -d '{{"description":"Q3"}}'
  curl -si {base}/api/v1/tasks -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' -d '{{"project_id":"<id>","title":"Draft the landing page"}}'
  curl -s '{base}/api/v1/tasks?project_id=<id>&status=todo' -H "authorization: Bearer $TOKEN"

Press Ctrl-C to stop the service and its database."#
    );
}
