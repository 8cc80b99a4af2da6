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
    /// Generate a service (the defaults, or the options given) into target/demo and run it.
    Demo(Demo),
    /// Generate every case (xtask/cases, then pairwise) and run each service's own `cargo xtask ci`.
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
    /// An option of the template, e.g. `-d auth=verifier` or `-d example=false`; repeatable.
    #[arg(short = 'd', long = "define", value_name = "KEY=VALUE", value_parser = parse_define)]
    pub defines: Vec<(String, String)>,
    /// The options of a case of `cargo xtask test --list` instead.
    #[arg(long, value_name = "NAME", conflicts_with = "defines")]
    pub case: Option<String>,
}

#[derive(Debug, Args)]
pub struct Test {
    /// Run only this case (`--list` shows them); repeatable.
    #[arg(long = "case", value_name = "NAME")]
    pub cases: Vec<String>,
    /// Only check that every tool the selected cases need is installed, then stop.
    #[arg(long)]
    pub preflight: bool,
    /// Print the cases (named and pairwise) and what each sets, then stop.
    #[arg(long)]
    pub list: bool,
    /// With --list: the case names as a JSON array, for a CI matrix.
    #[arg(long, requires = "list")]
    pub json: bool,
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
