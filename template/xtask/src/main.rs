//! `cargo xtask`: the workflows of this service in one place (database, dev loop, OpenAPI,
//! images, Kubernetes manifests, benchmarks, coverage, mutation testing, CI{% if jobs %}, dead
//! jobs{% endif %}). This file only parses the command line and dispatches; each command is its
//! module.

mod bench;
mod ci;
mod coverage;
mod db;
mod dev;
mod docker;
mod engine;
mod flags;
{%- if jobs %}
mod jobs;
{%- endif %}
mod k8s;
mod mutants;
mod openapi;
mod project;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let flags = flags::Xtask::parse();
    let result = match flags.command {
        flags::Command::Db(command) => db::run(command),
        flags::Command::Dev(dev) => dev::run(&dev),
        flags::Command::Openapi(openapi) => openapi::run(&openapi),
        flags::Command::Docker(command) => docker::run(command),
        flags::Command::K8s(command) => k8s::run(&command),
        flags::Command::Bench(bench) => bench::run(&bench),
        flags::Command::Coverage(coverage) => coverage::run(&coverage),
        flags::Command::Mutants(mutants) => mutants::run(&mutants),
{%- if jobs %}
        flags::Command::Jobs(command) => jobs::run(&command),
{%- endif %}
        flags::Command::Ci => ci::run(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
