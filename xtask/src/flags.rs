//! The command line of `cargo xtask`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "cargo xtask", about = "Generate, demonstrate and test the service template")]
pub struct Xtask {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate a service from the template.
    New(New),
    /// Generate the default service into target/demo and run it against a PostgreSQL it owns.
    Demo(Demo),
    /// Generate every option set in xtask/cases and run each service's own `cargo xtask ci`.
    Test(Test),
    /// Build local stand-ins for the registry images the generated service uses (needs podman).
    Images(Images),
    /// Regenerate the template's derived files (openapi.json, Cargo.lock) from generated services.
    Snapshots,
}

#[derive(Debug, Args)]
pub struct New {
    /// The service's name: lowercase letters, digits and hyphens, e.g. orders-service.
    pub name: String,
    /// A template value, e.g. `-d example=false` or `-d http_port=9000`; repeatable.
    #[arg(short = 'd', long = "define", value_name = "KEY=VALUE", value_parser = parse_define)]
    pub defines: Vec<(String, String)>,
    /// The directory to create the service in (it gets a subdirectory named after the service).
    #[arg(long, default_value = ".")]
    pub dest: PathBuf,
}

#[derive(Debug, Args)]
pub struct Demo {
    /// The HTTP port of the demo service.
    #[arg(long, default_value_t = 8080, value_parser = clap::value_parser!(u16).range(1024..))]
    pub port: u16,
}

#[derive(Debug, Args)]
pub struct Test {
    /// Run only this case (a file name in xtask/cases without `.toml`); repeatable.
    #[arg(long = "case", value_name = "NAME")]
    pub cases: Vec<String>,
    /// Only check that every tool the selected cases need is installed, then stop.
    #[arg(long)]
    pub preflight: bool,
}

fn parse_define(raw: &str) -> Result<(String, String), String> {
    let (key, value) = raw
        .split_once('=')
        .ok_or_else(|| format!("expected KEY=VALUE, got {raw:?}"))?;
    if key.is_empty() {
        return Err(format!("expected KEY=VALUE, got {raw:?}"));
    }
    Ok((key.to_owned(), value.to_owned()))
}

#[derive(Debug, Args)]
pub struct Images {
    /// Rebuild images that already exist.
    #[arg(long)]
    pub force: bool,
}
