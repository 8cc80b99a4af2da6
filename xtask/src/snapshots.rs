//! `cargo xtask snapshots`: regenerates the template's derived files from generated services.
//! `template/Cargo.lock` pins the dependencies every service starts with, `template/openapi.json`
//! its API document and `template/k8s/rendered` its manifests; each is one Liquid file that
//! renders to the exact file of each option set, so a new service passes its own `--locked`
//! builds and drift checks from the first commit.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail, ensure};
use serde_json::{Map, Value};
use xshell::{Shell, cmd};

use crate::generate::{self, repo_root, scratch_dir, shared_target_dir};

/// One name per option set, because the services share a target directory and cargo keeps one
/// binary per name.
const NAMES: [&str; 5] = [
    "snapshot-blank",
    "snapshot-full",
    "snapshot-none",
    "snapshot-verifier-blank",
    "snapshot-verifier",
];
const DESCRIPTION: &str = "Snapshot service";
/// A port no other setting uses, so that any place the manifests name it is found.
const PORT: &str = "8137";
/// The values of `auth`, in the order [`by_auth`] takes one text for each.
const AUTH: [&str; 3] = ["none", "verifier", "issuer"];

pub fn run() -> anyhow::Result<()> {
    let sh = Shell::new()?;
    sh.set_var("RUST_BACKTRACE", "0");
    generate::ensure_cargo_generate(&sh)?;
    let _target = sh.push_env("CARGO_TARGET_DIR", shared_target_dir());
    let dest = scratch_dir("snapshots")?;
    let generate = |name: &str, values: &[(&str, &str)]| {
        let defines: Vec<(String, String)> = values
            .iter()
            .chain(&[("description", DESCRIPTION), ("http_port", PORT)])
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect();
        generate::generate_ok(&sh, name, &defines, &dest)
    };
    let issuer = [
        generate(NAMES[0], &[("example", "false")])?,
        generate(NAMES[1], &[("example", "true")])?,
    ];
    let none = generate(NAMES[2], &[("auth", "none")])?;
    let verifier = [
        generate(NAMES[3], &[("auth", "verifier"), ("example", "false")])?,
        generate(NAMES[4], &[("auth", "verifier"), ("example", "true")])?,
    ];
    // Each full service, with the name of its package, in the order of AUTH.
    let full = [(&none, NAMES[2]), (&verifier[1], NAMES[4]), (&issuer[1], NAMES[1])];
    let template = repo_root().join("template");

    let locks = full
        .iter()
        .map(|(project, name)| lock_file(&sh, project, name))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let lock = merge_locks([&locks[0], &locks[1], &locks[2]])?;
    std::fs::write(template.join("Cargo.lock"), lock)?;
    println!("wrote template/Cargo.lock");

    let merged = |[blank, full]: &[PathBuf; 2]| liquid_openapi(&openapi(&sh, blank)?, &openapi(&sh, full)?);
    let without = serde_json::to_string_pretty(&placeholders(&openapi(&sh, &none)?)?)? + "\n";
    let document = by_auth([&without, &merged(&verifier)?, &merged(&issuer)?]);
    std::fs::write(template.join("openapi.json"), document)?;
    println!("wrote template/openapi.json");

    let manifests = full
        .iter()
        .map(|(project, name)| manifests(&sh, project, name))
        .collect::<anyhow::Result<Vec<_>>>()?;
    for file in manifests[2].keys() {
        let text = |index: usize| {
            manifests[index]
                .get(file)
                .with_context(|| format!("no {file} with auth = {}", AUTH[index]))
        };
        let merged = by_auth_documents([text(0)?, text(1)?, text(2)?]);
        std::fs::write(template.join("k8s").join("rendered").join(file), merged)?;
        println!("wrote template/k8s/rendered/{file}");
    }
    Ok(())
}

/// One text per value of `auth` (in the order of [`AUTH`]) as one template: the text once
/// when all agree, else each behind its condition.
fn by_auth(texts: [&str; 3]) -> String {
    let [none, verifier, issuer] = texts;
    if none == verifier && verifier == issuer {
        return issuer.to_owned();
    }
    let condition = |value: &str, equal: bool| format!("auth {} \"{value}\"", if equal { "==" } else { "!=" });
    // The value whose text differs from the two that agree, if two agree.
    let odd_one = if none == verifier {
        Some((2, issuer, none))
    } else if verifier == issuer {
        Some((0, none, issuer))
    } else if none == issuer {
        Some((1, verifier, none))
    } else {
        None
    };
    match odd_one {
        Some((index, odd, rest)) => match (odd, rest) {
            ("", _) => format!("{{% if {} %}}{rest}{{% endif %}}", condition(AUTH[index], false)),
            (_, "") => format!("{{% if {} %}}{odd}{{% endif %}}", condition(AUTH[index], true)),
            _ => format!(
                "{{% if {} %}}{odd}{{% else %}}{rest}{{% endif %}}",
                condition(AUTH[index], true)
            ),
        },
        None => format!(
            "{{% if {} %}}{none}{{% elsif {} %}}{verifier}{{% else %}}{issuer}{{% endif %}}",
            condition(AUTH[0], true),
            condition(AUTH[1], true)
        ),
    }
}

/// [`by_auth`] document by document, when the files have the same documents in turn.
fn by_auth_documents(texts: [&str; 3]) -> String {
    let documents = texts.map(documents);
    if documents.iter().any(|list| list.len() != documents[0].len()) {
        return by_auth(texts);
    }
    (0..documents[0].len())
        .map(|index| by_auth([documents[0][index], documents[1][index], documents[2][index]]))
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
            .replace(&format!("containerPort: {PORT}"), "containerPort: {{http_port}}");
        ensure!(
            !text.contains("snapshot-") && !text.contains(PORT),
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

/// One lock file for every value of `auth`: a package that not every option set has, or has
/// with other dependencies, sits in a condition.
fn merge_locks(locks: [&str; 3]) -> anyhow::Result<String> {
    let parsed = locks.map(packages);
    ensure!(
        parsed.iter().all(|(head, _)| *head == parsed[0].0),
        "the lock files differ in their headers"
    );
    // Cargo orders packages by id; an id missing so far is placed after the package it
    // follows in its own file, which keeps every file's order.
    let mut order: Vec<&str> = Vec::new();
    for (_, packages) in &parsed {
        let mut previous: Option<&str> = None;
        for (id, _) in packages {
            if !order.contains(id) {
                let at = previous
                    .and_then(|previous| order.iter().position(|known| *known == previous))
                    .map_or(0, |index| index + 1);
                order.insert(at, id);
            }
            previous = Some(id);
        }
    }
    let mut out = parsed[0].0.to_owned();
    for id in order {
        out.push_str(&by_auth([0, 1, 2].map(|index| block(&parsed[index].1, id))));
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

    /// Renders the `auth` conditions [`by_auth`] writes, for `auth = value`.
    fn render_auth(template: &str, value: &str) -> String {
        let holds = |condition: &str| {
            let (operator, operand) = condition
                .strip_prefix("auth ")
                .and_then(|rest| rest.split_once(' '))
                .expect("a condition on auth");
            (operand.trim_matches('"') == value) == (operator == "==")
        };
        let mut out = String::new();
        let mut rest = template;
        while let Some(start) = rest.find("{% if ") {
            out.push_str(&rest[..start]);
            let (condition, after) = rest[start + 6..].split_once(" %}").expect("tag end");
            let (body, after) = after.split_once("{% endif %}").expect("endif");
            let (then, otherwise) = body.split_once("{% else %}").unwrap_or((body, ""));
            let (then, elsif) = match then.split_once("{% elsif ") {
                Some((then, elsif)) => (then, Some(elsif.split_once(" %}").expect("tag end"))),
                None => (then, None),
            };
            out.push_str(match elsif {
                _ if holds(condition) => then,
                Some((condition, text)) if holds(condition) => text,
                _ => otherwise,
            });
            rest = after;
        }
        out.push_str(rest);
        out
    }

    #[test]
    fn one_text_per_auth_renders_back_to_each() {
        for texts in [
            ["a", "a", "a"],
            ["a", "b", "b"],
            ["", "b", "b"],
            ["a", "", "a"],
            ["a", "a", ""],
            ["a", "b", "c"],
            ["", "b", "c"],
        ] {
            let merged = by_auth(texts);
            for (value, text) in AUTH.iter().zip(texts) {
                assert_eq!(render_auth(&merged, value), text, "{texts:?} as {value}: {merged}");
            }
        }
    }

    #[test]
    fn manifests_differ_only_in_the_documents_that_differ() {
        let without = "---\nkind: A\n---\nkind: B\n";
        let with = "---\nkind: A\n---\nkind: B\nenv: [KEY]\n";

        let merged = by_auth_documents([without, with, with]);

        assert_eq!(merged.matches("kind: A").count(), 1);
        assert_eq!(render_auth(&merged, "none"), without);
        assert_eq!(render_auth(&merged, "issuer"), with);
    }

    #[test]
    fn merged_lock_files_render_to_each_one() {
        let package =
            |name: &str, extra: &str| format!("[[package]]\nname = \"{name}\"\nversion = \"1.0.0\"\n{extra}\n");
        let head = "# generated\nversion = 4\n\n";
        let none = [
            head.to_owned(),
            package("anyhow", "checksum = \"a\"\n"),
            package("only-none", "checksum = \"b\"\n"),
            package("svc", "dependencies = [\n \"anyhow\",\n]\n"),
        ]
        .concat();
        let verifier = [
            head.to_owned(),
            package("anyhow", "checksum = \"a\"\n"),
            package("jsonwebtoken", "checksum = \"c\"\n"),
            package("reqwest", "checksum = \"d\"\n"),
            package(
                "svc",
                "dependencies = [\n \"anyhow\",\n \"jsonwebtoken\",\n \"reqwest\",\n]\n",
            ),
        ]
        .concat();
        let issuer = [
            head.to_owned(),
            package("anyhow", "checksum = \"a\"\n"),
            package("argon2", "checksum = \"e\"\n"),
            package("jsonwebtoken", "checksum = \"c\"\n"),
            package(
                "svc",
                "dependencies = [\n \"anyhow\",\n \"argon2\",\n \"jsonwebtoken\",\n]\n",
            ),
        ]
        .concat();

        let merged = merge_locks([&none, &verifier, &issuer]).expect("mergeable");

        assert_eq!(render_auth(&merged, "none"), none);
        assert_eq!(render_auth(&merged, "verifier"), verifier);
        assert_eq!(render_auth(&merged, "issuer"), issuer);
        assert_eq!(
            merged.matches("anyhow\"\nversion").count(),
            1,
            "shared packages appear once"
        );
        assert_eq!(merged.matches("jsonwebtoken\"\nversion").count(), 1);
    }
}
