//! `cargo xtask` for the template repository: generate a service, run a demo of one, and test
//! every option set. This file parses and dispatches; each command is its own module.

mod cases;
mod condition;
mod containers;
mod contract;
mod conventions;
mod demo;
mod dev_database;
mod faults;
mod flags;
mod generate;
mod generator;
mod images;
mod issuer_check;
mod lockfile;
mod merge;
mod new;
mod options;
mod preflight;
mod probe;
mod realtime_check;
mod redis_tls;
mod service;
mod snapshots;
mod test;
mod throwaway;
mod webhooks_check;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let flags = flags::Xtask::parse();
    let result = match flags.command {
        flags::Command::New(new) => new::run(&new),
        flags::Command::Demo(demo) => demo::run(&demo),
        flags::Command::Test(test) => test::run(&test),
        flags::Command::Images(images) => images::run(&images),
        flags::Command::Snapshots => snapshots::run(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
