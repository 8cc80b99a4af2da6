//! `cargo xtask snapshots`: the template's derived files, computed from generated services of
//! the declaration's sample shapes (their number grows with the options, not with their
//! combinations), so a new service passes its own drift checks from the first commit.
//! - `template/Cargo.lock` resolves the union of every shape's dependencies once. A service
//!   starts with it, and its first cargo command drops what the service does not use, keeping
//!   every version the template was tested with (`cargo xtask test` checks that).
//! - `template/k8s/conventions.toml` is `k8s/conventions.toml`, the organisation's.
//! - `template/asyncapi.json` and `template/schema.graphql` merge the documents of the shapes
//!   with realtime and with GraphQL, line by line, as the manifests below.
//! - `template/openapi.json` merges the documents of every shape, key by key, into one Liquid
//!   template that renders to a document equal to each (`merge::json`; the service's check
//!   compares documents, not text), and `template/k8s/rendered/*` merge their texts line by
//!   line into one that renders to the exact file of each (`merge`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail, ensure};
use xshell::{Shell, cmd};

use crate::conventions;
use crate::generate::{self, repo_root, scratch_dir, shared_target_dir};
use crate::merge::{self, merge};
use crate::options::{Declaration, Shape, Value};

const DESCRIPTION: &str = "Snapshot service";
/// A port no other setting uses, so that any place the manifests name it is found.
const PORT: &str = "8137";
/// The package of the union manifest the lock file is resolved for.
const UNION: &str = "snapshot-union";
/// Documents an option adds: the option, the file, and the service's command that prints it.
/// Merged like the manifests, as other options add to them (realtime, GraphQL subscriptions).
const OPTION_DOCUMENTS: [(&str, &str, &str); 2] = [
    ("realtime", "asyncapi.json", "asyncapi"),
    ("graphql", "schema.graphql", "graphql-schema"),
];

pub fn run() -> anyhow::Result<()> {
    let sh = generate::shell()?;
    sh.set_var("RUST_BACKTRACE", "0");
    generate::ensure_cargo_generate(&sh)?;
    let _target = sh.push_env("CARGO_TARGET_DIR", shared_target_dir());
    let root = repo_root();
    let declaration = Declaration::load(&root)?;
    let dest = scratch_dir("snapshots")?;
    let template = root.join("template");
    std::fs::copy(root.join(conventions::PATH), template.join(conventions::PATH))?;
    println!("copied {} into the template", conventions::PATH);
    // The shapes are generated from the template, derived files included: emptied first, a
    // derived file that no longer renders cannot stop its own regeneration.
    std::fs::write(template.join("openapi.json"), "{}\n")?;
    for file in generate::files(&template.join("k8s").join("rendered"))? {
        std::fs::write(file, "")?;
    }
    let mut services = Vec::new();
    for (index, shape) in declaration.sample_shapes().into_iter().enumerate() {
        // One name per shape: the services share a target directory, and cargo keeps one
        // binary per name.
        let name = format!("snapshot-{}", index + 1);
        let mut defines: Vec<(String, String)> = declaration
            .asked(&shape)
            .iter()
            .map(|(key, value)| (key.clone(), value.to_string()))
            .collect();
        defines.push(("description".into(), DESCRIPTION.into()));
        defines.push(("http_port".into(), PORT.into()));
        println!("shape {name}: {shape:?}");
        let project = generate::generate_ok(&sh, &root, &name, &defines, &dest)?;
        services.push(Service { name, shape, project });
    }

    let lock = union_lock(&sh, &services, &dest)?;
    std::fs::write(template.join("Cargo.lock"), lock)?;
    println!("wrote template/Cargo.lock");

    let documents = services
        .iter()
        .map(|service| Ok((service.shape.clone(), service.openapi(&sh)?)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    std::fs::write(
        template.join("openapi.json"),
        merge::json::merge(&declaration, &documents)?,
    )?;
    println!("wrote template/openapi.json");

    for (option, file, command) in OPTION_DOCUMENTS {
        let texts = services
            .iter()
            .filter(|service| service.shape.get(option) == Some(&Value::Bool(true)))
            .map(|service| Ok((service.shape.clone(), service.document(&sh, command)?)))
            .collect::<anyhow::Result<Vec<_>>>()?;
        ensure!(!texts.is_empty(), "no sample shape has {option}");
        std::fs::write(template.join(file), merge(&declaration, &texts)?)?;
        println!("wrote template/{file}");
    }

    let mut manifests: BTreeMap<String, Vec<(Shape, String)>> = BTreeMap::new();
    for service in &services {
        for (file, text) in service.manifests(&sh)? {
            manifests.entry(file).or_default().push((service.shape.clone(), text));
        }
    }
    for (file, texts) in manifests {
        ensure!(
            texts.len() == services.len(),
            "k8s/rendered/{file} exists in some shapes only"
        );
        std::fs::write(
            template.join("k8s").join("rendered").join(&file),
            merge(&declaration, &texts)?,
        )?;
        println!("wrote template/k8s/rendered/{file}");
    }
    Ok(())
}

/// A service generated for one sample shape.
struct Service {
    name: String,
    shape: Shape,
    project: PathBuf,
}

impl Service {
    /// Its OpenAPI document, with its name and description as placeholders.
    fn openapi(&self, sh: &Shell) -> anyhow::Result<serde_json::Value> {
        let _dir = sh.push_dir(&self.project);
        let text = cmd!(sh, "cargo run --quiet -- openapi").read()?;
        let mut document: serde_json::Value =
            serde_json::from_str(&text).context("the service printed invalid JSON")?;
        let info = document
            .get_mut("info")
            .and_then(serde_json::Value::as_object_mut)
            .context("no info")?;
        ensure!(
            info.get("title") == Some(&self.name.as_str().into()),
            "unexpected title"
        );
        ensure!(
            info.get("description") == Some(&DESCRIPTION.into()),
            "unexpected description"
        );
        info.insert("title".into(), "{{project-name}}".into());
        info.insert("description".into(), "{{description}}".into());
        Ok(document)
    }

    /// The document `command` prints, with the service's name as a placeholder where the
    /// AsyncAPI document's title holds it.
    fn document(&self, sh: &Shell, command: &str) -> anyhow::Result<String> {
        let _dir = sh.push_dir(&self.project);
        let text = cmd!(sh, "cargo run --quiet -- {command}").read()?;
        let text = text.replace(&format!("\"{} realtime\"", self.name), "\"{{project-name}} realtime\"");
        ensure!(
            !text.contains("snapshot-"),
            "the document of `{command}` names the snapshot service"
        );
        Ok(text + "\n")
    }

    /// Its rendered Kubernetes manifests by file name, with its name and port as placeholders.
    fn manifests(&self, sh: &Shell) -> anyhow::Result<BTreeMap<String, String>> {
        let _dir = sh.push_dir(&self.project);
        cmd!(sh, "cargo xtask k8s render").run()?;
        let mut files = BTreeMap::new();
        for entry in std::fs::read_dir(self.project.join("k8s").join("rendered"))? {
            let path = entry?.path();
            let text = std::fs::read_to_string(&path)?
                .replace(&self.name, "{{project-name}}")
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
}

/// The lock file of a crate that depends on everything any shape depends on.
fn union_lock(sh: &Shell, services: &[Service], dest: &Path) -> anyhow::Result<String> {
    let dir = dest.join(UNION);
    let first = &services.first().context("no shapes")?.project;
    std::fs::create_dir_all(&dir)?;
    cmd!(sh, "cp -R {first}/xtask {dir}/").quiet().run()?;
    std::fs::write(dir.join("lib.rs"), "")?;
    let first_manifest: toml::Table = toml::from_str(&std::fs::read_to_string(first.join("Cargo.toml"))?)?;
    let mut manifest = toml::Table::new();
    let mut package = toml::Table::new();
    package.insert("name".into(), UNION.into());
    package.insert("version".into(), "0.1.0".into());
    package.insert("edition".into(), "2024".into());
    manifest.insert("package".into(), package.into());
    let mut lib = toml::Table::new();
    lib.insert("path".into(), "lib.rs".into());
    manifest.insert("lib".into(), lib.into());
    // The members and their shared lints, as the services have them.
    let workspace = first_manifest.get("workspace").cloned().context("no [workspace]")?;
    manifest.insert("workspace".into(), workspace);
    for section in ["dependencies", "dev-dependencies", "build-dependencies"] {
        let mut union = toml::Table::new();
        for service in services {
            let text = std::fs::read_to_string(service.project.join("Cargo.toml"))?;
            let own: toml::Table = toml::from_str(&text)?;
            for (name, spec) in own.get(section).and_then(toml::Value::as_table).into_iter().flatten() {
                let merged = match union.remove(name) {
                    Some(known) => unite(name, known, spec.clone())?,
                    None => spec.clone(),
                };
                union.insert(name.clone(), merged);
            }
        }
        if !union.is_empty() {
            manifest.insert(section.into(), union.into());
        }
    }
    std::fs::write(dir.join("Cargo.toml"), toml::to_string(&manifest)?)?;
    // The lock a generated service starts with, so that no version moves unless a manifest
    // asks for it.
    let lock = std::fs::read_to_string(first.join("Cargo.lock"))?;
    let own = format!("name = \"{}\"", services[0].name);
    std::fs::write(
        dir.join("Cargo.lock"),
        lock.replace(&own, &format!("name = \"{UNION}\"")),
    )?;
    let _dir = sh.push_dir(&dir);
    cmd!(sh, "cargo metadata --format-version 1")
        .quiet()
        .ignore_stdout()
        .run()?;
    let lock = std::fs::read_to_string(dir.join("Cargo.lock"))?;
    let own = format!("name = \"{UNION}\"");
    ensure!(lock.contains(&own), "the lock file does not name the union package");
    Ok(lock.replace(&own, "name = \"{{project-name}}\""))
}

/// One dependency as two shapes declare it: the same version, every feature of either, and
/// default features unless both turn them off.
fn unite(name: &str, left: toml::Value, right: toml::Value) -> anyhow::Result<toml::Value> {
    let table = |value: toml::Value| -> toml::Table {
        match value {
            toml::Value::String(version) => toml::Table::from_iter([("version".to_owned(), version.into())]),
            toml::Value::Table(table) => table,
            _ => toml::Table::new(),
        }
    };
    let (mut left, right) = (table(left), table(right));
    if left.get("version") != right.get("version") {
        bail!(
            "shapes ask for different versions of {name}: {:?} and {:?}",
            left.get("version"),
            right.get("version")
        );
    }
    let defaults = |table: &toml::Table| table.get("default-features") != Some(&toml::Value::Boolean(false));
    if defaults(&left) || defaults(&right) {
        left.remove("default-features");
    }
    let mut features: Vec<toml::Value> = Vec::new();
    for feature in [&left, &right]
        .into_iter()
        .filter_map(|table| table.get("features").and_then(toml::Value::as_array))
        .flatten()
    {
        if !features.contains(feature) {
            features.push(feature.clone());
        }
    }
    if !features.is_empty() {
        left.insert("features".into(), features.into());
    }
    Ok(left.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dependency_two_shapes_declare_gets_the_features_of_both() {
        let issuer: toml::Value = toml::from_str::<toml::Table>(
            r#"reqwest = { version = "0.13", default-features = false, features = ["json"] }"#,
        )
        .expect("toml")["reqwest"]
            .clone();
        let verifier: toml::Value = toml::from_str::<toml::Table>(
            r#"reqwest = { version = "0.13", default-features = false, features = ["rustls"] }"#,
        )
        .expect("toml")["reqwest"]
            .clone();

        let united = unite("reqwest", issuer, verifier.clone()).expect("same version");

        assert_eq!(united["features"], toml::Value::from(vec!["json", "rustls"]));
        assert_eq!(united["default-features"], toml::Value::Boolean(false));
        let with_defaults = unite("reqwest", toml::Value::from("0.13"), verifier).expect("same version");
        assert!(with_defaults.get("default-features").is_none());
        assert!(unite("reqwest", toml::Value::from("0.12"), toml::Value::from("0.13")).is_err());
    }
}
