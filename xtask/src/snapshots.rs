//! `cargo xtask snapshots`: regenerates the template's derived files from generated services.
//! `template/Cargo.lock` pins the dependencies every service starts with, `template/openapi.json`
//! its API document and `template/k8s/rendered` its manifests; each is one Liquid file that
//! renders to the exact file of each option set, so a new service passes its own `--locked`
//! builds and drift checks from the first commit.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, bail, ensure};
use serde_json::{Map, Value};
use xshell::{Shell, cmd};

use crate::generate::{self, repo_root, scratch_dir, shared_target_dir};

/// One name per option set, because the services share a target directory and cargo keeps one
/// binary per name: without the example, with it, and without accounts.
const NAMES: [&str; 3] = ["snapshot-blank", "snapshot-full", "snapshot-none"];
const DESCRIPTION: &str = "Snapshot service";
/// The condition that tells the services without accounts from the others.
const NO_AUTH: &str = "auth == \"none\"";
const WITH_AUTH: &str = "auth != \"none\"";

pub fn run() -> anyhow::Result<()> {
    let sh = Shell::new()?;
    sh.set_var("RUST_BACKTRACE", "0");
    generate::ensure_cargo_generate(&sh)?;
    let _target = sh.push_env("CARGO_TARGET_DIR", shared_target_dir());
    let dest = scratch_dir("snapshots")?;
    let generate = |name: &str, values: &[(&str, &str)]| {
        let defines: Vec<(String, String)> = values
            .iter()
            .chain(&[("description", DESCRIPTION)])
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect();
        generate::generate_ok(&sh, name, &defines, &dest)
    };
    let blank = generate(NAMES[0], &[("example", "false")])?;
    let full = generate(NAMES[1], &[("example", "true")])?;
    let none = generate(NAMES[2], &[("auth", "none")])?;
    let template = repo_root().join("template");

    let lock = merge_locks(&lock_file(&sh, &none, NAMES[2])?, &lock_file(&sh, &full, NAMES[1])?)?;
    std::fs::write(template.join("Cargo.lock"), lock)?;
    println!("wrote template/Cargo.lock");

    let with_accounts = liquid_openapi(&openapi(&sh, &blank)?, &openapi(&sh, &full)?)?;
    let without = placeholders(&openapi(&sh, &none)?)?;
    let document = either(&(serde_json::to_string_pretty(&without)? + "\n"), &with_accounts);
    std::fs::write(template.join("openapi.json"), document)?;
    println!("wrote template/openapi.json");

    let (none, full) = (manifests(&sh, &none, NAMES[2])?, manifests(&sh, &full, NAMES[1])?);
    for (file, with_accounts) in full {
        let without = none.get(&file).with_context(|| format!("no {file} without accounts"))?;
        std::fs::write(
            template.join("k8s").join("rendered").join(&file),
            either_manifest(without, &with_accounts),
        )?;
        println!("wrote template/k8s/rendered/{file}");
    }
    Ok(())
}

/// `without` for services without accounts, `with` for the others; one of them when both agree.
fn either(without: &str, with: &str) -> String {
    match (without, with) {
        _ if without == with => with.to_owned(),
        ("", _) => format!("{{% if {WITH_AUTH} %}}{with}{{% endif %}}"),
        (_, "") => format!("{{% if {NO_AUTH} %}}{without}{{% endif %}}"),
        _ => format!("{{% if {NO_AUTH} %}}{without}{{% else %}}{with}{{% endif %}}"),
    }
}

/// [`either`] document by document, when both files have the same documents in turn.
fn either_manifest(without: &str, with: &str) -> String {
    let (without_documents, with_documents) = (documents(without), documents(with));
    if without_documents.len() != with_documents.len() {
        return either(without, with);
    }
    without_documents
        .iter()
        .zip(&with_documents)
        .map(|(without, with)| either(without, with))
        .collect()
}

/// The YAML documents of `text`, each with its `---` line.
fn documents(text: &str) -> Vec<&str> {
    let mut documents = Vec::new();
    let mut rest = text;
    while let Some(next) = rest.get(1..).and_then(|tail| tail.find("\n---\n")) {
        documents.push(&rest[..next + 2]);
        rest = &rest[next + 2..];
    }
    documents.push(rest);
    documents
}

/// The rendered Kubernetes manifests of each environment, by file name, as templates.
fn manifests(sh: &Shell, project: &Path, name: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let _dir = sh.push_dir(project);
    cmd!(sh, "cargo xtask k8s render").run()?;
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(project.join("k8s").join("rendered"))? {
        let path = entry?.path();
        let text = std::fs::read_to_string(&path)?
            .replace(name, "{{project-name}}")
            .replace("containerPort: 8080", "containerPort: {{http_port}}");
        ensure!(
            !text.contains("snapshot-") && !text.contains("8080"),
            "{} names the snapshot service",
            path.display()
        );
        let file = path.file_name().context("file name")?.to_string_lossy().into_owned();
        files.insert(file, text);
    }
    Ok(files)
}

/// The generated lock file, brought up to date with the manifests, as a template.
fn lock_file(sh: &Shell, project: &Path, name: &str) -> anyhow::Result<String> {
    let _dir = sh.push_dir(project);
    cmd!(sh, "cargo fetch --quiet").run()?;
    let lock = std::fs::read_to_string(project.join("Cargo.lock"))?;
    let own = format!("name = \"{name}\"");
    ensure!(lock.contains(&own), "Cargo.lock does not name the service package");
    Ok(lock.replace(&own, "name = \"{{project-name}}\""))
}

/// One lock file for services with and without accounts: a package that only one of them
/// has, or has with other dependencies, sits in a condition on `auth`.
fn merge_locks(without: &str, with: &str) -> anyhow::Result<String> {
    let (head, without) = packages(without);
    let (with_head, with) = packages(with);
    ensure!(head == with_head, "the lock files differ in their headers");
    // Cargo orders packages by id; ids that only the other file has are placed after the
    // package they follow there, which keeps the order of both.
    let mut order: Vec<&str> = with.iter().map(|(id, _)| *id).collect();
    let mut previous: Option<&str> = None;
    for (id, _) in &without {
        if !order.contains(id) {
            let at = previous
                .and_then(|previous| order.iter().position(|known| *known == previous))
                .map_or(0, |index| index + 1);
            order.insert(at, id);
        }
        previous = Some(id);
    }
    let mut out = head.to_owned();
    for id in order {
        out.push_str(&either(block(&without, id), block(&with, id)));
    }
    Ok(out)
}

/// The block of package `id` in `packages`, or nothing.
fn block<'a>(packages: &[(&str, &'a str)], id: &str) -> &'a str {
    packages
        .iter()
        .find(|(known, _)| *known == id)
        .map_or("", |(_, block)| *block)
}

/// The text before the first package, and each package's id (its name, version and source
/// lines) with its whole block, blank line included.
fn packages(lock: &str) -> (&str, Vec<(&str, &str)>) {
    let start = lock.find("[[package]]").unwrap_or(lock.len());
    let mut blocks = Vec::new();
    let mut rest = &lock[start..];
    while !rest.is_empty() {
        let end = rest[1..].find("[[package]]").map_or(rest.len(), |index| index + 1);
        let block = &rest[..end];
        let id_end = block
            .find("\nchecksum")
            .or_else(|| block.find("\ndependencies"))
            .unwrap_or(block.len());
        blocks.push((&block[..id_end], block));
        rest = &rest[end..];
    }
    (&lock[..start], blocks)
}

fn openapi(sh: &Shell, project: &Path) -> anyhow::Result<Value> {
    let _dir = sh.push_dir(project);
    let text = cmd!(sh, "cargo run --quiet -- openapi").read()?;
    serde_json::from_str(&text).context("the service printed invalid JSON")
}

/// `document` with the service's name and description as placeholders.
fn placeholders(document: &Value) -> anyhow::Result<Value> {
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
}

/// One document for both option sets: what only the example adds sits in `{% if example %}`.
fn liquid_openapi(blank: &Value, full: &Value) -> anyhow::Result<String> {
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

    /// Renders the `auth` conditions `either` writes.
    fn render_auth(template: &str, none: bool) -> String {
        let mut out = String::new();
        let mut rest = template;
        while let Some(start) = rest.find("{% if ") {
            out.push_str(&rest[..start]);
            let (condition, after) = rest[start + 6..].split_once(" %}").expect("tag end");
            let (body, after) = after.split_once("{% endif %}").expect("endif");
            let (then, otherwise) = body.split_once("{% else %}").unwrap_or((body, ""));
            let holds = if condition == NO_AUTH { none } else { !none };
            out.push_str(if holds { then } else { otherwise });
            rest = after;
        }
        out.push_str(rest);
        out
    }

    #[test]
    fn manifests_differ_only_in_the_documents_that_differ() {
        let without = "---\nkind: A\n---\nkind: B\n";
        let with = "---\nkind: A\n---\nkind: B\nenv: [KEY]\n";

        let merged = either_manifest(without, with);

        assert_eq!(merged.matches("kind: A").count(), 1);
        assert_eq!(render_auth(&merged, true), without);
        assert_eq!(render_auth(&merged, false), with);
    }

    #[test]
    fn merged_lock_files_render_to_each_one() {
        let package =
            |name: &str, extra: &str| format!("[[package]]\nname = \"{name}\"\nversion = \"1.0.0\"\n{extra}\n");
        let head = "# generated\nversion = 4\n\n";
        let without = [
            head.to_owned(),
            package("anyhow", "checksum = \"a\"\n"),
            package("only-without", "checksum = \"b\"\n"),
            package("svc", "dependencies = [\n \"anyhow\",\n]\n"),
        ]
        .concat();
        let with = [
            head.to_owned(),
            package("anyhow", "checksum = \"a\"\n"),
            package("jsonwebtoken", "checksum = \"c\"\n"),
            package("svc", "dependencies = [\n \"anyhow\",\n \"jsonwebtoken\",\n]\n"),
        ]
        .concat();

        let merged = merge_locks(&without, &with).expect("mergeable");

        assert_eq!(render_auth(&merged, true), without);
        assert_eq!(render_auth(&merged, false), with);
        assert_eq!(
            merged.matches("anyhow\"\nversion").count(),
            1,
            "shared packages appear once"
        );
    }
}
