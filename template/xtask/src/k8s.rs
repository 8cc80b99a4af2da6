//! `cargo xtask k8s render --env E [--image REF] [--check]`: fills `k8s/templates` with
//! `k8s/values/E.toml` and writes `k8s/rendered/E.yaml`, plain manifests for `kubectl apply`,
//! in the templates' file order (the namespace first, the migration Job before the Deployment).
//! What it writes is checked first: every rule a reviewer would ask for (restricted security
//! context, probes, resources, no token) fails the render with the manifest and field named.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, ensure};
use serde_json::Value;

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
    let mut values = values(env)?;
    if let Some(image) = image {
        values.insert("image".into(), image.into());
    }
    let dir = project::root().join("k8s").join("templates");
    let mut templates: Vec<_> = std::fs::read_dir(&dir)?.flatten().map(|entry| entry.path()).collect();
    templates.sort();
    let mut out = format!("# Rendered by `cargo xtask k8s render --env {env}` from k8s/templates; do not edit.\n");
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
            check(&manifest).with_context(|| format!("k8s/templates/{file}: {}", describe(&manifest)))?;
        }
        out.push_str("---\n");
        out.push_str(text.trim_end());
        out.push('\n');
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

/// The environment's values plus those that follow from the service itself.
fn values(env: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let path = project::root().join("k8s").join("values").join(format!("{env}.toml"));
    let text = std::fs::read_to_string(&path).with_context(|| {
        let known = environments().unwrap_or_default().join(", ");
        format!("no values for environment {env:?} (k8s/values has: {known})")
    })?;
    let mut values = key_values(&text).with_context(|| format!("k8s/values/{env}.toml"))?;
    let production = std::fs::read_to_string(project::root().join("config").join("production.toml"))?;
    let production = key_values(&production).context("config/production.toml")?;
    let setting = |key: &str| -> anyhow::Result<u64> {
        production
            .get(key)
            .with_context(|| format!("config/production.toml has no {key}"))?
            .parse()
            .context(key.to_owned())
    };
    let grace = PRE_STOP_SECS + setting("shutdown_delay_secs")? + setting("shutdown_timeout_secs")? + 5;
    values.insert("name".into(), project::package_field("name")?);
    values.insert("port".into(), setting("port")?.to_string());
    values.insert("pre_stop_secs".into(), PRE_STOP_SECS.to_string());
    values.insert("termination_grace_period_secs".into(), grace.to_string());
    Ok(values)
}

/// `key = "text"` and `key = 123` lines; comments, blanks and `[section]` headers are skipped.
fn key_values(text: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let mut values = BTreeMap::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('[') {
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .with_context(|| format!("line {}: expected key = value", number + 1))?;
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|rest| rest.strip_suffix('"'))
            .unwrap_or(value);
        values.insert(key.trim().to_owned(), value.to_owned());
    }
    Ok(values)
}

/// Replaces every `${key}`; a key without a value is an error, never an empty string.
fn substitute(template: &str, values: &BTreeMap<String, String>) -> anyhow::Result<String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').context("unclosed ${")? + start;
        let key = &rest[start + 2..end];
        out.push_str(values.get(key).with_context(|| format!("no value for ${{{key}}}"))?);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The rules every manifest of this service keeps.
fn check(manifest: &Value) -> anyhow::Result<()> {
    for field in ["apiVersion", "kind", "metadata.name"] {
        require(
            manifest,
            field,
            |value| value.as_str().is_some_and(|text| !text.is_empty()),
            "must be set",
        )?;
    }
    let kind = manifest["kind"].as_str().unwrap_or_default();
    if kind != "Namespace" {
        require(manifest, "metadata.namespace", Value::is_string, "must be set")?;
    }
    match kind {
        "Namespace" => require(
            manifest,
            "metadata.labels.pod-security\\.kubernetes\\.io/enforce",
            |value| value == "restricted",
            "must be restricted",
        ),
        "ServiceAccount" => require(
            manifest,
            "automountServiceAccountToken",
            |value| value == false,
            "must be false",
        ),
        "Deployment" => {
            check_pod(manifest, "spec.template.spec")?;
            let container = "spec.template.spec.containers.0";
            for (probe, path) in [
                ("startupProbe", "/health/live"),
                ("livenessProbe", "/health/live"),
                ("readinessProbe", "/health/ready"),
            ] {
                require(
                    manifest,
                    &format!("{container}.{probe}.httpGet.path"),
                    |value| value == path,
                    &format!("must be {path}"),
                )?;
            }
            require(
                manifest,
                &format!("{container}.lifecycle.preStop.sleep.seconds"),
                Value::is_u64,
                "must pause before SIGTERM",
            )?;
            require(
                manifest,
                "spec.template.spec.topologySpreadConstraints",
                |value| value.as_array().is_some_and(|list| !list.is_empty()),
                "must spread replicas",
            )?;
            let grace = lookup(manifest, "spec.template.spec.terminationGracePeriodSeconds")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            let pause = lookup(manifest, &format!("{container}.lifecycle.preStop.sleep.seconds"))
                .and_then(Value::as_u64)
                .unwrap_or(0);
            ensure!(
                grace > pause,
                "spec.template.spec.terminationGracePeriodSeconds must exceed the preStop pause"
            );
            Ok(())
        }
        "Job" => check_pod(manifest, "spec.template.spec"),
        "HorizontalPodAutoscaler" => require(
            manifest,
            "apiVersion",
            |value| value == "autoscaling/v2",
            "must be autoscaling/v2",
        ),
        _ => Ok(()),
    }
}

/// A pod spec under `spec`: no token, restricted security context, requests and a memory limit.
fn check_pod(manifest: &Value, spec: &str) -> anyhow::Result<()> {
    require(
        manifest,
        &format!("{spec}.automountServiceAccountToken"),
        |value| value == false,
        "must be false",
    )?;
    require(
        manifest,
        &format!("{spec}.securityContext.runAsNonRoot"),
        |value| value == true,
        "must be true",
    )?;
    require(
        manifest,
        &format!("{spec}.securityContext.seccompProfile.type"),
        |value| value == "RuntimeDefault",
        "must be RuntimeDefault",
    )?;
    let containers = lookup(manifest, &format!("{spec}.containers"))
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    ensure!(containers > 0, "{spec}.containers must not be empty");
    for index in 0..containers {
        let container = format!("{spec}.containers.{index}");
        let context = format!("{container}.securityContext");
        require(
            manifest,
            &format!("{context}.allowPrivilegeEscalation"),
            |value| value == false,
            "must be false",
        )?;
        require(
            manifest,
            &format!("{context}.readOnlyRootFilesystem"),
            |value| value == true,
            "must be true",
        )?;
        require(
            manifest,
            &format!("{context}.capabilities.drop"),
            |value| value.as_array().is_some_and(|drop| drop.iter().any(|cap| cap == "ALL")),
            "must drop ALL",
        )?;
        for resource in ["requests.cpu", "requests.memory", "limits.memory"] {
            require(
                manifest,
                &format!("{container}.resources.{resource}"),
                |value| !value.is_null(),
                "must be set",
            )?;
        }
    }
    Ok(())
}

fn require(manifest: &Value, path: &str, rule: impl Fn(&Value) -> bool, message: &str) -> anyhow::Result<()> {
    let value = lookup(manifest, path).unwrap_or(&Value::Null);
    ensure!(rule(value), "{} {message}", path.replace("\\.", "."));
    Ok(())
}

/// The value at a dotted path; `\.` is a dot inside a key, numbers index arrays.
fn lookup<'a>(manifest: &'a Value, path: &str) -> Option<&'a Value> {
    let escaped = path.replace("\\.", "\u{0}");
    escaped
        .split('.')
        .map(|part| part.replace('\u{0}', "."))
        .try_fold(manifest, |value, key| match value {
            Value::Array(items) => items.get(key.parse::<usize>().ok()?),
            _ => value.get(&key),
        })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn every_placeholder_needs_a_value() {
        let values = BTreeMap::from([("name".to_owned(), "svc".to_owned())]);
        assert_eq!(substitute("a ${name} b", &values).ok().as_deref(), Some("a svc b"));
        let missing = substitute("${image}", &values).expect_err("no value").to_string();
        assert!(missing.contains("${image}"), "{missing}");
    }

    #[test]
    fn a_privileged_container_is_refused_with_its_field_named() {
        let mut job = json!({
            "apiVersion": "batch/v1", "kind": "Job", "metadata": { "name": "m", "namespace": "n" },
            "spec": { "template": { "spec": {
                "automountServiceAccountToken": false,
                "securityContext": { "runAsNonRoot": true, "seccompProfile": { "type": "RuntimeDefault" } },
                "containers": [{
                    "securityContext": { "allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
                        "capabilities": { "drop": ["ALL"] } },
                    "resources": { "requests": { "cpu": "1", "memory": "1Mi" }, "limits": { "memory": "1Mi" } }
                }]
            } } }
        });
        assert!(check(&job).is_ok());

        job["spec"]["template"]["spec"]["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = json!(true);
        let err = check(&job).expect_err("refused").to_string();
        assert_eq!(
            err,
            "spec.template.spec.containers.0.securityContext.allowPrivilegeEscalation must be false"
        );
    }

    #[test]
    fn dotted_label_keys_can_be_looked_up() {
        let namespace = json!({ "metadata": { "labels": { "pod-security.kubernetes.io/enforce": "restricted" } } });
        let value = lookup(&namespace, "metadata.labels.pod-security\\.kubernetes\\.io/enforce");
        assert_eq!(value, Some(&json!("restricted")));
    }
}
