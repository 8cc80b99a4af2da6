//! `cargo xtask snapshots`: regenerates the template's derived files from generated services.
//! `template/Cargo.lock` pins the dependencies every service starts with; `template/openapi.json`
//! is one Liquid file that renders to the exact document of each option set, so a new service
//! passes its own `cargo xtask openapi --check` from the first commit.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, bail, ensure};
use serde_json::{Map, Value};
use xshell::{Shell, cmd};

use crate::generate::{self, repo_root, scratch_dir, shared_target_dir};

/// Two names, because the services share a target directory and cargo keeps one binary per name.
const NAMES: [&str; 2] = ["snapshot-blank", "snapshot-full"];
const DESCRIPTION: &str = "Snapshot service";

pub fn run() -> anyhow::Result<()> {
    let sh = Shell::new()?;
    sh.set_var("RUST_BACKTRACE", "0");
    generate::ensure_cargo_generate(&sh)?;
    let _target = sh.push_env("CARGO_TARGET_DIR", shared_target_dir());
    let dest = scratch_dir("snapshots")?;
    let generate = |example: bool| {
        let defines = [
            ("example".to_owned(), example.to_string()),
            ("description".to_owned(), DESCRIPTION.to_owned()),
        ];
        generate::generate_ok(&sh, NAMES[usize::from(example)], &defines, &dest)
    };
    let full = generate(true)?;
    let blank = generate(false)?;

    let lock = lock_file(&sh, &full)?;
    std::fs::write(repo_root().join("template").join("Cargo.lock"), lock)?;
    println!("wrote template/Cargo.lock");

    let document = liquid_openapi(&openapi(&sh, &blank)?, &openapi(&sh, &full)?)?;
    std::fs::write(repo_root().join("template").join("openapi.json"), document)?;
    println!("wrote template/openapi.json");

    manifests(&sh, &full)
}

/// The rendered Kubernetes manifests of each environment, as templates.
fn manifests(sh: &Shell, project: &Path) -> anyhow::Result<()> {
    let _dir = sh.push_dir(project);
    cmd!(sh, "cargo xtask k8s render").run()?;
    let rendered = project.join("k8s").join("rendered");
    for entry in std::fs::read_dir(&rendered)? {
        let path = entry?.path();
        let text = std::fs::read_to_string(&path)?
            .replace(NAMES[1], "{{project-name}}")
            .replace("containerPort: 8080", "containerPort: {{http_port}}");
        ensure!(
            !text.contains("snapshot-") && !text.contains("8080"),
            "{} names the snapshot service",
            path.display()
        );
        let file = path.file_name().context("file name")?;
        std::fs::write(
            repo_root().join("template").join("k8s").join("rendered").join(file),
            text,
        )?;
        println!("wrote template/k8s/rendered/{}", file.to_string_lossy());
    }
    Ok(())
}

/// The generated lock file, brought up to date with the manifests, as a template.
fn lock_file(sh: &Shell, project: &Path) -> anyhow::Result<String> {
    let _dir = sh.push_dir(project);
    cmd!(sh, "cargo fetch --quiet").run()?;
    let lock = std::fs::read_to_string(project.join("Cargo.lock"))?;
    let own = format!("name = \"{}\"", NAMES[1]);
    ensure!(lock.contains(&own), "Cargo.lock does not name the service package");
    Ok(lock.replace(&own, "name = \"{{project-name}}\""))
}

fn openapi(sh: &Shell, project: &Path) -> anyhow::Result<Value> {
    let _dir = sh.push_dir(project);
    let text = cmd!(sh, "cargo run --quiet -- openapi").read()?;
    serde_json::from_str(&text).context("the service printed invalid JSON")
}

/// One document for both option sets: what only the example adds sits in `{% if example %}`.
fn liquid_openapi(blank: &Value, full: &Value) -> anyhow::Result<String> {
    let placeholders = |document: &Value| -> anyhow::Result<Value> {
        let mut document = document.clone();
        let info = document
            .get_mut("info")
            .and_then(Value::as_object_mut)
            .context("no info")?;
        let title = info.get("title").and_then(Value::as_str).unwrap_or_default();
        ensure!(NAMES.contains(&title), "unexpected title {title:?}");
        ensure!(
            info.get("description") == Some(&Value::from(DESCRIPTION)),
            "unexpected description"
        );
        info.insert("title".into(), "{{project-name}}".into());
        info.insert("description".into(), "{{description}}".into());
        Ok(document)
    };
    let mut out = String::new();
    write_merged(&mut out, &placeholders(blank)?, &placeholders(full)?, 0, "")?;
    out.push('\n');
    Ok(out)
}

/// Writes `full`, wrapping object entries that `blank` lacks in the `example` condition. Those
/// entries come first, each followed by a comma, so the rendered JSON is valid either way.
fn write_merged(out: &mut String, blank: &Value, full: &Value, depth: usize, path: &str) -> anyhow::Result<()> {
    if blank == full {
        return write_value(out, full, depth);
    }
    let (Value::Object(blank), Value::Object(full)) = (blank, full) else {
        bail!("{path} differs between the option sets in a way a condition cannot express");
    };
    if let Some(key) = blank.keys().find(|key| !full.contains_key(*key)) {
        bail!("{path}/{key} exists only without the example");
    }
    let extra: Map<String, Value> = full
        .iter()
        .filter(|(key, _)| !blank.contains_key(*key))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let inner = "  ".repeat(depth + 1);
    out.push_str("{\n");
    if !extra.is_empty() {
        out.push_str("{%- if example %}\n");
        for (index, (key, value)) in extra.iter().enumerate() {
            write!(out, "{inner}{}: ", Value::from(key.as_str()))?;
            write_value(out, value, depth + 1)?;
            if index + 1 < extra.len() || !blank.is_empty() {
                out.push(',');
            }
            out.push('\n');
        }
        out.push_str("{%- endif %}\n");
    }
    for (index, (key, value)) in blank.iter().enumerate() {
        write!(out, "{inner}{}: ", Value::from(key.as_str()))?;
        write_merged(out, value, &full[key], depth + 1, &format!("{path}/{key}"))?;
        if index + 1 < blank.len() {
            out.push(',');
        }
        out.push('\n');
    }
    write!(out, "{}}}", "  ".repeat(depth))?;
    Ok(())
}

fn write_value(out: &mut String, value: &Value, depth: usize) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    let indent = "  ".repeat(depth);
    for (index, line) in text.lines().enumerate() {
        if index > 0 {
            out.push('\n');
            out.push_str(&indent);
        }
        out.push_str(line);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// Renders the one condition the merged document uses.
    fn render(template: &str, example: bool) -> Value {
        let mut text = String::new();
        let mut keep = true;
        for line in template.lines() {
            match line.trim() {
                "{%- if example %}" => keep = example,
                "{%- endif %}" => keep = true,
                _ if keep => text.push_str(line),
                _ => {}
            }
        }
        serde_json::from_str(&text).expect("valid JSON")
    }

    #[test]
    fn the_merged_document_renders_to_each_option_set() {
        let blank = json!({ "info": { "title": NAMES[0], "description": DESCRIPTION },
            "paths": { "/health": { "get": {} } }, "components": { "schemas": { "A": {} } } });
        let full = json!({ "info": { "title": NAMES[1], "description": DESCRIPTION },
            "paths": { "/health": { "get": {} }, "/items": { "post": { "x": [1, 2] } } },
            "components": { "schemas": { "A": {}, "B": { "type": "object" } } } });

        let merged = liquid_openapi(&blank, &full).expect("mergeable");

        let title = json!({ "title": "{{project-name}}", "description": "{{description}}" });
        let mut expected_full = full.clone();
        expected_full["info"] = title.clone();
        let mut expected_blank = blank.clone();
        expected_blank["info"] = title;
        assert_eq!(render(&merged, true), expected_full);
        assert_eq!(render(&merged, false), expected_blank);
    }

    #[test]
    fn differences_a_condition_cannot_express_are_refused() {
        let blank = json!({ "info": { "title": NAMES[0], "description": DESCRIPTION }, "paths": { "/a": 1 } });
        let full = json!({ "info": { "title": NAMES[1], "description": DESCRIPTION }, "paths": { "/a": 2 } });

        assert!(liquid_openapi(&blank, &full).is_err());
    }
}
