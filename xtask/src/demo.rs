//! `cargo xtask demo [-d KEY=VALUE ...] [--case NAME]`: generate a service with the options
//! chosen (the defaults without any) into `target/demo`, give it a PostgreSQL of its own,
//! migrate, serve, and print where to look with a curl session for what its options add. With
//! `auth = verifier`, an issuer generated from the same template runs beside it on the next
//! port and signs the tokens. Ctrl-C stops everything and deletes the demo databases.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use xshell::{Cmd, Shell, cmd};

use crate::cases;
use crate::flags::Demo;
use crate::generate::{self, repo_root, shared_target_dir};
use crate::options::{Declaration, Shape, Value};
use crate::probe;

const NAME: &str = "demo-service";
/// The issuer a verifier demo takes its tokens from.
const ISSUER: &str = "demo-issuer";

pub fn run(demo: &Demo) -> anyhow::Result<()> {
    let root = repo_root();
    let declaration = Declaration::load(&root)?;
    let (defines, shape) = options(&root, &declaration, demo)?;
    let verifier = shape.get("auth") == Some(&Value::Text("verifier".into()));
    let ports: Vec<u16> = if verifier {
        let issuer_port = demo
            .port
            .checked_add(1)
            .context("--port leaves no port for the issuer")?;
        vec![demo.port, issuer_port]
    } else {
        vec![demo.port]
    };
    for port in &ports {
        if TcpListener::bind(("127.0.0.1", *port)).is_err() {
            bail!("port {port} is in use; pick another with --port");
        }
    }
    let sh = generate::shell()?;
    sh.set_var("RUST_BACKTRACE", "0");
    sh.set_var("CARGO_TARGET_DIR", shared_target_dir());
    generate::ensure_cargo_generate(&sh)?;
    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = interrupted.clone();
    // Ctrl-C reaches the services too (same process group), which drain and exit; this
    // process only has to outlive them to stop the databases.
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst)).context("cannot handle Ctrl-C")?;

    let dest = root.join("target").join("demo");
    let mut services = Vec::new();
    if verifier {
        let issuer_port = ports[1];
        let defines = [("example", "false"), ("http_port", &issuer_port.to_string())]
            .map(|(key, value)| (key.to_owned(), value.to_owned()));
        services.push(Service::generate(&sh, &root, ISSUER, &defines, issuer_port, &dest)?);
    }
    let mut main = Service::generate(&sh, &root, NAME, &defines, demo.port, &dest)?;
    if verifier {
        // The issuer names itself, and the audience, after its package.
        let issuer = format!("http://127.0.0.1:{}", ports[1]);
        main.env = vec![
            ("APP_AUTH__ISSUER".into(), ISSUER.into()),
            ("APP_AUTH__AUDIENCE".into(), ISSUER.into()),
            ("APP_AUTH__JWKS_URL".into(), format!("{issuer}/.well-known/jwks.json")),
        ];
    }
    services.push(main);

    let result = run_all(&sh, &mut services, &shape, &interrupted);
    let mut stopped = Ok(());
    for service in services.iter_mut().rev() {
        if let Err(err) = service.stop(&sh) {
            stopped = Err(err);
        }
    }
    result.and(stopped)
}

/// The `-d` values (or the case's) checked against the declaration, and the shape they give.
fn options(root: &Path, declaration: &Declaration, demo: &Demo) -> anyhow::Result<(Vec<(String, String)>, Shape)> {
    if let Some(id) = &demo.case {
        let case = cases::select(cases::load(root, declaration)?, std::slice::from_ref(id))?
            .pop()
            .context("no case")?;
        let defines = case
            .defines
            .into_iter()
            .filter(|(key, _)| key != "http_port")
            .chain([("http_port".to_owned(), demo.port.to_string())])
            .collect();
        return Ok((defines, case.shape));
    }
    if demo.defines.iter().any(|(key, _)| key == "http_port") {
        bail!("set the port with --port");
    }
    let mut defines = demo.defines.clone();
    let shape = declaration.shape_of(&defines)?;
    defines.push(("http_port".to_owned(), demo.port.to_string()));
    Ok((defines, shape))
}

fn run_all(sh: &Shell, services: &mut [Service], shape: &Shape, interrupted: &AtomicBool) -> anyhow::Result<()> {
    for service in services.iter_mut() {
        service.prepare(sh)?;
    }
    for service in services.iter_mut() {
        service.start(interrupted)?;
    }
    let issuer = services.len() > 1;
    print_guide(
        shape,
        services.last().map_or(0, |service| service.port),
        issuer.then(|| services[0].port),
    );
    while !interrupted.load(Ordering::SeqCst) {
        for service in services.iter_mut() {
            if let Some(child) = service.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!("{} exited on its own ({status})", service.name);
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    println!("\nstopping");
    Ok(())
}

/// One generated service of the demo, its database and its process.
struct Service {
    name: &'static str,
    project: PathBuf,
    port: u16,
    env: Vec<(String, String)>,
    child: Option<Child>,
    database: bool,
}

impl Service {
    fn generate(
        sh: &Shell,
        root: &Path,
        name: &'static str,
        defines: &[(String, String)],
        port: u16,
        dest: &Path,
    ) -> anyhow::Result<Self> {
        let project = dest.join(name);
        if project.exists() {
            // A previous demo that was killed may have left its database running.
            {
                let _dir = sh.push_dir(&project);
                if let Err(err) = xtask(sh).args(["db", "down", "--delete-data"]).run() {
                    eprintln!("warning: could not stop the previous demo's database ({err}); starting over anyway");
                }
            }
            std::fs::remove_dir_all(&project)?;
        }
        println!("generating {name} into {}", project.display());
        generate::generate_ok(sh, root, name, defines, dest)?;
        Ok(Self {
            name,
            project,
            port,
            env: Vec::new(),
            child: None,
            database: false,
        })
    }

    /// Builds it and gives it a migrated database.
    fn prepare(&mut self, sh: &Shell) -> anyhow::Result<()> {
        let _dir = sh.push_dir(&self.project);
        println!(
            "building {} (the first build compiles every dependency and takes a few minutes)",
            self.name
        );
        cmd!(sh, "cargo build --quiet").run()?;
        let db_port = probe::free_port()?.to_string();
        xtask(sh).args(["db", "up", "--port", db_port.as_str()]).run()?;
        self.database = true;
        xtask(sh).args(["db", "migrate"]).run()?;
        Ok(())
    }

    fn start(&mut self, interrupted: &AtomicBool) -> anyhow::Result<()> {
        let child = Command::new("cargo")
            .args(["run", "--quiet", "--", "serve"])
            .current_dir(&self.project)
            .env("CARGO_TARGET_DIR", shared_target_dir())
            .env_remove("DATABASE_URL")
            .envs(self.env.iter().map(|(key, value)| (key, value)))
            .spawn()
            .with_context(|| format!("cannot start {}", self.name))?;
        let child = self.child.insert(child);
        probe::wait_until_ready(self.port, Duration::from_mins(2), || {
            if interrupted.load(Ordering::SeqCst) {
                bail!("interrupted before the service was ready");
            }
            if let Some(status) = child.try_wait()? {
                bail!("the service exited before it was ready ({status})");
            }
            Ok(())
        })?;
        Ok(())
    }

    /// Waits for the process (Ctrl-C reached it) or kills it, then deletes the database.
    fn stop(&mut self, sh: &Shell) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            if child.try_wait()?.is_none() && !wait_for(&mut child, Duration::from_secs(20))? {
                let _ = child.kill();
            }
            let status = child.wait()?;
            println!("{} stopped ({status})", self.name);
        }
        if self.database {
            let _dir = sh.push_dir(&self.project);
            xtask(sh).args(["db", "down", "--delete-data"]).run()?;
        }
        Ok(())
    }
}

/// Whether `child` exits within `limit`.
fn wait_for(child: &mut Child, limit: Duration) -> anyhow::Result<bool> {
    let started = std::time::Instant::now();
    while started.elapsed() < limit {
        if child.try_wait()?.is_some() {
            return Ok(true);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(false)
}

/// `cargo xtask` in a demo service, whose migrations must use the database the demo starts,
/// not one a DATABASE_URL in the caller's environment names.
fn xtask(sh: &Shell) -> Cmd<'_> {
    cmd!(sh, "cargo xtask").env_remove("DATABASE_URL")
}

/// Where to look, and a curl session for what the options add.
fn print_guide(shape: &Shape, port: u16, issuer_port: Option<u16>) {
    let base = format!("http://127.0.0.1:{port}");
    let is = |option: &str, value: &str| shape.get(option) == Some(&Value::Text(value.to_owned()));
    let on = |option: &str| shape.get(option) == Some(&Value::Bool(true));
    let options: Vec<String> = shape.iter().map(|(name, value)| format!("{name}={value}")).collect();
    println!("\n{NAME} is running ({}).\n", options.join(" "));
    println!("  Swagger UI {base}/docs");
    println!("  OpenAPI    {base}/openapi.json");
    println!("  Metrics    {base}/metrics");
    println!("  Health     {base}/health/live  {base}/health/ready");
    let credentials = r#"'{"email":"ada@example.com","password":"correct horse battery staple"}'"#;
    let json = "-H 'content-type: application/json'";
    let bearer = "-H \"authorization: Bearer $TOKEN\"";
    let sign_in = |at: &str| {
        format!(
            "  curl -si {at}/api/v1/auth/register {json} -d {credentials}\n  TOKEN=$(curl -s {at}/api/v1/auth/login {json} -d {credentials} | sed 's/.*\"access_token\":\"\\([^\"]*\\)\".*/\\1/')"
        )
    };
    if is("auth", "issuer") {
        println!("\nAn account and a token:\n\n{}", sign_in(&base));
        println!("  curl -s {base}/api/v1/auth/me {bearer}");
    } else if let Some(issuer_port) = issuer_port {
        let issuer = format!("http://127.0.0.1:{issuer_port}");
        println!(
            "\nTokens come from {ISSUER} at {issuer}: an account there, a token, and who this service says you are:\n"
        );
        println!("{}", sign_in(&issuer));
        println!("  curl -s {base}/api/v1/me {bearer}");
    } else {
        println!("\nNo authentication: every route is open, per-address rate limits apply.");
        println!("  curl -s {base}/health/ready");
    }
    if on("example") {
        println!("\nThe example resource, as that account:\n");
        println!("  curl -si {base}/api/v1/projects {bearer} {json} -d '{{\"name\":\"Website relaunch\"}}'");
        println!("  curl -s '{base}/api/v1/projects?sort=name&limit=10' {bearer}");
        println!(
            "  curl -si -X PATCH {base}/api/v1/projects/<id> {bearer} -H 'if-match: \"1\"' {json} -d '{{\"description\":\"Q3\"}}'"
        );
        println!(
            "  curl -si {base}/api/v1/tasks {bearer} {json} -d '{{\"project_id\":\"<id>\",\"title\":\"Draft the landing page\"}}'"
        );
        println!("  curl -s '{base}/api/v1/tasks?project_id=<id>&status=todo' {bearer}");
    }
    println!("\nPress Ctrl-C to stop and delete the demo's data.");
}
