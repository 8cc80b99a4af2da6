//! `cargo xtask openapi [--check]`: the documents of the service's interfaces
//! (`openapi.json`{% if realtime %}, `asyncapi.json` for realtime{% endif %}{% if graphql %}, `schema.graphql` for GraphQL{% endif %}) are generated from the code
//! and committed, so changes show up in review; `--check` fails when one is stale.

use anyhow::{Context, bail};

use crate::flags::Openapi;
use crate::project;

/// Each document, and the service's command that prints it.
{% if realtime and graphql -%}
const DOCUMENTS: &[(&str, &str)] = &[
    ("openapi.json", "openapi"),
    ("asyncapi.json", "asyncapi"),
    ("schema.graphql", "graphql-schema"),
];
{%- else -%}
const DOCUMENTS: &[(&str, &str)] = &[("openapi.json", "openapi"){% if realtime %}, ("asyncapi.json", "asyncapi"){% endif %}{% if graphql %}, ("schema.graphql", "graphql-schema"){% endif %}];
{%- endif %}

pub fn run(flags: &Openapi) -> anyhow::Result<()> {
    let sh = project::shell()?;
    for (file, command) in DOCUMENTS {
        let generated = project::service(&sh, &[command]).read()?.trim_end().to_owned();
        let path = project::root().join(file);
        if !flags.check {
            std::fs::write(&path, generated + "\n")?;
            println!("wrote {file}");
            continue;
        }
        let committed =
            std::fs::read_to_string(&path).with_context(|| format!("cannot read {file}; run `cargo xtask openapi`"))?;
        if !same_document(file, &committed, &generated)? {
            bail!("{file} is out of date with the code; run `cargo xtask openapi` and commit the result");
        }
        println!("{file} is up to date");
    }
    Ok(())
}

/// JSON documents compare as values: key order and whitespace are not part of the contract.
/// Others compare as text, trailing whitespace aside.
fn same_document(file: &str, committed: &str, generated: &str) -> anyhow::Result<bool> {
    let json = std::path::Path::new(file)
        .extension()
        .is_some_and(|extension| extension == "json");
    if !json {
        return Ok(committed.trim_end() == generated);
    }
    let committed: serde_json::Value =
        serde_json::from_str(committed).with_context(|| format!("{file} is not valid JSON"))?;
    let generated: serde_json::Value = serde_json::from_str(generated)?;
    Ok(committed == generated)
}
