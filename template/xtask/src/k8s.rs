//! `cargo xtask k8s render --env E [--image REF] [--check]`: fills `k8s/templates` with
//! `k8s/values/E.toml` over the organisation's `k8s/conventions.toml` and writes
//! `k8s/rendered/E.yaml`, plain manifests for `kubectl apply`, in the templates' file order (the
//! namespace first, the migration Job before the Deployment). What it writes is checked first
//! (`rules`): a break fails the render with the manifest and field named.

mod conventions;
mod rules;

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, ensure};
use serde_json::Value;

use self::conventions::Conventions;
use crate::flags::K8s;
use crate::project;

/// How long the kubelet waits before sending SIGTERM, so endpoints drop the pod first.
const PRE_STOP_SECS: u64 = 5;

pub fn run(flags: &K8s) -> anyhow::Result<()> {
    let K8s::Render { env, image, check } = flags;
    ensure!(
        !(*check && image.is_some()),
        "--check compares the committed values; drop --image"
    );
    let environments: Vec<String> = match env {
        Some(env) => vec![env.clone()],
        None => environments()?,
    };
    for env in &environments {
        let rendered = render(env, image.as_deref())?;
        let path = project::root().join("k8s").join("rendered").join(format!("{env}.yaml"));
        if *check {
            let committed = std::fs::read_to_string(&path).unwrap_or_default();
            ensure!(
                committed == rendered,
                "{} is out of date; run `cargo xtask k8s render --env {env}` and commit the result",
                relative(&path)
            );
            println!("{} is up to date", relative(&path));
        } else {
            std::fs::create_dir_all(path.parent().context("rendered directory")?)?;
            std::fs::write(&path, rendered)?;
            println!("wrote {}", relative(&path));
        }
    }
    Ok(())
}

/// The environments that have a values file.
fn environments() -> anyhow::Result<Vec<String>> {
    let mut names: Vec<String> = std::fs::read_dir(project::root().join("k8s").join("values"))?
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.strip_suffix(".toml").map(str::to_owned))
        .collect();
    names.sort();
    Ok(names)
}

fn relative(path: &Path) -> String {
    path.strip_prefix(project::root()).unwrap_or(path).display().to_string()
}

/// The manifests of `env` as one multi-document YAML file.
pub fn render(env: &str, image: Option<&str>) -> anyhow::Result<String> {
    let conventions = Conventions::load()?;
    let mut values = values(env, &conventions)?;
    if let Some(image) = image {
        values.insert("image".into(), image.into());
    }
    let dir = project::root().join("k8s").join("templates");
    let mut templates: Vec<_> = std::fs::read_dir(&dir)?.flatten().map(|entry| entry.path()).collect();
    templates.sort();
    let mut out = format!("# Rendered by `cargo xtask k8s render --env {env}` from k8s/templates; do not edit.\n");
    let mut manifests = Vec::new();
    for template in templates {
        let file = template
            .file_name()
            .and_then(|name| name.to_str())
            .unwrap_or_default()
            .to_owned();
        if file.ends_with("ingress.yaml") && values.get("ingress_host").is_none_or(String::is_empty) {
            continue;
        }
        let text = substitute(&std::fs::read_to_string(&template)?, &values)
            .with_context(|| format!("k8s/templates/{file}"))?;
        for document in text.split("\n---\n") {
            let manifest: Value =
                yaml_serde::from_str(document).with_context(|| format!("k8s/templates/{file}: not valid YAML"))?;
            rules::check(&manifest, &conventions)
                .with_context(|| format!("k8s/templates/{file}: {}", describe(&manifest)))?;
            manifests.push((file.clone(), manifest));
        }
        out.push_str("---\n");
        out.push_str(text.trim_end());
        out.push('\n');
    }
    // The pods a Service sends traffic to, by name label; only those need a drain.
    let served: Vec<&Value> = manifests
        .iter()
        .filter(|(_, manifest)| manifest["kind"] == "Service")
        .map(|(_, manifest)| &manifest["spec"]["selector"]["app.kubernetes.io/name"])
        .collect();
    for (file, manifest) in &manifests {
        let pods = &manifest["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"];
        if manifest["kind"] == "Deployment" && served.contains(&pods) {
            rules::check_drain(manifest).with_context(|| format!("k8s/templates/{file}: {}", describe(manifest)))?;
        }
    }
    Ok(out)
}

fn describe(manifest: &Value) -> String {
    format!(
        "{} {}",
        manifest["kind"].as_str().unwrap_or("?"),
        manifest["metadata"]["name"].as_str().unwrap_or("?")
    )
}

/// The environment's values over the conventions' defaults, plus those that follow from the
/// service itself; a value may name others as `${key}`.
fn values(env: &str, conventions: &Conventions) -> anyhow::Result<BTreeMap<String, String>> {
    let path = project::root().join("k8s").join("values").join(format!("{env}.toml"));
    let text = std::fs::read_to_string(&path).with_context(|| {
        let known = environments().unwrap_or_default().join(", ");
        format!("no values for environment {env:?} (k8s/values has: {known})")
    })?;
    let mut values = conventions.values();
    values.extend(key_values(&text).with_context(|| format!("k8s/values/{env}.toml"))?);
    let production = std::fs::read_to_string(project::root().join("config").join("production.toml"))?;
    let production: toml::Table = toml::from_str(&production).context("config/production.toml")?;
    let setting = |key: &str| -> anyhow::Result<u64> {
        production
            .get("server")
            .and_then(|server| server.get(key))
            .and_then(toml::Value::as_integer)
            .and_then(|value| u64::try_from(value).ok())
            .with_context(|| format!("config/production.toml has no [server] {key}"))
    };
    let grace = PRE_STOP_SECS + setting("shutdown_delay_secs")? + setting("shutdown_timeout_secs")? + 5;
    values.insert("name".into(), project::package_field("name")?);
    values.insert("port".into(), setting("port")?.to_string());
    values.insert("pre_stop_secs".into(), PRE_STOP_SECS.to_string());
    values.insert("termination_grace_period_secs".into(), grace.to_string());
    let resolved = values
        .iter()
        .map(|(key, value)| {
            let value = substitute_inline(value, &values).with_context(|| format!("k8s/values/{env}.toml: {key}"))?;
            Ok((key.clone(), value))
        })
        .collect::<anyhow::Result<_>>()?;
    Ok(resolved)
}

/// The top-level values of a TOML file, as text: strings as they are, numbers and bools as
/// written. A table or an array is an error, since a template can only place text.
fn key_values(text: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let table: toml::Table = toml::from_str(text)?;
    let mut values = BTreeMap::new();
    for (key, value) in table {
        let text = match value {
            toml::Value::String(text) => text,
            toml::Value::Integer(number) => number.to_string(),
            toml::Value::Float(number) => number.to_string(),
            toml::Value::Boolean(flag) => flag.to_string(),
            other => anyhow::bail!("{key}: expected text, a number or a bool, found {}", other.type_str()),
        };
        values.insert(key, text);
    }
    Ok(values)
}

/// Replaces every `${key}`; a key without a value is an error, never an empty string. A
/// placeholder alone on its line may hold several lines (the conventions' labels): each takes
/// the placeholder's indentation, and none leaves no line.
fn substitute(template: &str, values: &BTreeMap<String, String>) -> anyhow::Result<String> {
    let mut out = String::with_capacity(template.len());
    for line in template.split_inclusive('\n') {
        let content = line.trim_end_matches('\n');
        let indent = &content[..content.len() - content.trim_start().len()];
        if let Some(key) = content
            .trim()
            .strip_prefix("${")
            .and_then(|rest| rest.strip_suffix('}'))
            && !key.contains('}')
        {
            let value = values.get(key).with_context(|| format!("no value for ${{{key}}}"))?;
            for value_line in value.lines() {
                out.push_str(indent);
                out.push_str(value_line);
                out.push('\n');
            }
            continue;
        }
        out.push_str(&substitute_inline(line, values)?);
    }
    Ok(out)
}

/// Replaces every `${key}` in `text` with a value of one line.
fn substitute_inline(text: &str, values: &BTreeMap<String, String>) -> anyhow::Result<String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').context("unclosed ${")? + start;
        let key = &rest[start + 2..end];
        let value = values.get(key).with_context(|| format!("no value for ${{{key}}}"))?;
        ensure!(
            !value.contains('\n'),
            "${{{key}}} holds several lines; put it alone on its line"
        );
        out.push_str(value);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_placeholder_needs_a_value() {
        let values = BTreeMap::from([("name".to_owned(), "svc".to_owned())]);
        assert_eq!(substitute("a ${name} b", &values).ok().as_deref(), Some("a svc b"));
        let missing = substitute("${image}", &values).expect_err("no value").to_string();
        assert!(missing.contains("${image}"), "{missing}");
    }

    #[test]
    fn a_placeholder_alone_on_its_line_may_hold_several() {
        let values = BTreeMap::from([
            ("labels".to_owned(), "a: \"1\"\nb: \"2\"".to_owned()),
            ("none".to_owned(), String::new()),
        ]);

        let rendered = substitute("labels:\n    ${labels}\n    ${none}\nend\n", &values).expect("rendered");

        assert_eq!(rendered, "labels:\n    a: \"1\"\n    b: \"2\"\nend\n");
        assert!(substitute("x: ${labels}\n", &values).is_err());
    }
}
