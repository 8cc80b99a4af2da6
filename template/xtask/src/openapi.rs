//! `cargo xtask openapi [--check]`: `openapi.json` is generated from the code and committed,
//! so API changes show up in review; `--check` fails when it is stale.

use anyhow::{Context, bail};

use crate::flags::Openapi;
use crate::project;

const FILE: &str = "openapi.json";

pub fn run(flags: &Openapi) -> anyhow::Result<()> {
    let sh = project::shell()?;
    let generated = project::service(&sh, &["openapi"]).read()?;
    let path = project::root().join(FILE);
    if !flags.check {
        std::fs::write(&path, generated + "\n")?;
        println!("wrote {FILE}");
        return Ok(());
    }
    let committed =
        std::fs::read_to_string(&path).with_context(|| format!("cannot read {FILE}; run `cargo xtask openapi`"))?;
    // Compared as JSON values: key order and whitespace are not part of the contract.
    let committed: serde_json::Value =
        serde_json::from_str(&committed).with_context(|| format!("{FILE} is not valid JSON"))?;
    let generated: serde_json::Value = serde_json::from_str(&generated)?;
    if committed != generated {
        bail!("{FILE} is out of date with the code; run `cargo xtask openapi` and commit the result");
    }
    println!("{FILE} is up to date");
    Ok(())
}
