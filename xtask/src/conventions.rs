//! The organisation's Kubernetes conventions, kept at the top of this repository
//! (`k8s/conventions.toml`) and carried by every generated service as its own
//! `k8s/conventions.toml`. Every case's rendered manifests are checked against the original
//! here, independently of the service's own renderer.

use std::path::Path;

use anyhow::{Context, ensure};
use serde_json::Value;

use crate::generate::files;

/// Where the conventions live in the repository and in a service.
pub const PATH: &str = "k8s/conventions.toml";

/// What the manifests must show.
struct Conventions {
    pod_security: String,
    allowed_registries: Vec<String>,
    labels: Vec<(String, String)>,
}

fn load(root: &Path) -> anyhow::Result<Conventions> {
    let text = std::fs::read_to_string(root.join(PATH)).with_context(|| format!("cannot read {PATH}"))?;
    let table: toml::Table = toml::from_str(&text).with_context(|| format!("{PATH} is not TOML"))?;
    let text_of = |value: &toml::Value| value.as_str().map(str::to_owned);
    Ok(Conventions {
        pod_security: table.get("pod_security").and_then(text_of).context("no pod_security")?,
        allowed_registries: table
            .get("images")
            .and_then(|images| images.get("allowed"))
            .and_then(toml::Value::as_array)
            .context("no images.allowed")?
            .iter()
            .filter_map(text_of)
            .collect(),
        labels: table
            .get("labels")
            .and_then(toml::Value::as_table)
            .into_iter()
            .flatten()
            .filter_map(|(key, value)| Some((key.clone(), text_of(value)?)))
            .collect(),
    })
}

/// The template carries the repository's conventions unchanged.
pub fn check_template(root: &Path) -> anyhow::Result<()> {
    let original = std::fs::read_to_string(root.join(PATH))?;
    let copy = std::fs::read_to_string(root.join("template").join(PATH))?;
    ensure!(
        original == copy,
        "template/{PATH} differs from {PATH}; run `cargo xtask snapshots` and commit the result"
    );
    println!("the template carries {PATH}");
    Ok(())
}

/// The service carries the conventions, and every rendered manifest keeps them: the labels on
/// every object and pod, images only from the allowed registries, the namespace's Pod
/// Security level.
pub fn check_service(root: &Path, project: &Path) -> anyhow::Result<()> {
    let original = std::fs::read_to_string(root.join(PATH))?;
    let carried = std::fs::read_to_string(project.join(PATH))?;
    ensure!(original == carried, "the service's {PATH} is not the template's");
    let conventions = load(root)?;
    let mut objects = 0;
    for file in files(&project.join("k8s").join("rendered"))? {
        let text = std::fs::read_to_string(&file)?;
        for document in text.split("\n---\n").filter(|document| document.contains("kind:")) {
            let manifest: Value =
                yaml_serde::from_str(document).with_context(|| format!("{} is not valid YAML", file.display()))?;
            let name = format!(
                "{} {} in {}",
                manifest["kind"].as_str().unwrap_or("?"),
                manifest["metadata"]["name"].as_str().unwrap_or("?"),
                file.display()
            );
            check(&manifest, &conventions).with_context(|| name)?;
            objects += 1;
        }
    }
    ensure!(objects > 0, "no rendered manifests");
    println!("{objects} rendered objects keep {PATH}");
    Ok(())
}

fn check(manifest: &Value, conventions: &Conventions) -> anyhow::Result<()> {
    let mut label_sets = vec![&manifest["metadata"]["labels"]];
    let template = &manifest["spec"]["template"];
    if template.is_object() {
        label_sets.push(&template["metadata"]["labels"]);
    }
    for labels in label_sets {
        for (key, value) in &conventions.labels {
            ensure!(labels[key] == value.as_str(), "label {key} is not {value:?}");
        }
    }
    for container in template["spec"]["containers"].as_array().into_iter().flatten() {
        let image = container["image"].as_str().unwrap_or_default();
        let allowed = conventions
            .allowed_registries
            .iter()
            .any(|registry| image.starts_with(&format!("{registry}/")));
        ensure!(allowed, "image {image} is not from an allowed registry");
    }
    if manifest["kind"] == "Namespace" {
        let level = &manifest["metadata"]["labels"]["pod-security.kubernetes.io/enforce"];
        ensure!(
            *level == conventions.pod_security.as_str(),
            "enforces Pod Security {level}, not {}",
            conventions.pod_security
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_manifest_without_the_labels_or_from_another_registry_is_refused() {
        let conventions = Conventions {
            pod_security: "restricted".into(),
            allowed_registries: vec!["registry.example.com".into()],
            labels: vec![("example.com/team".into(), "backend".into())],
        };
        let labels = json!({ "example.com/team": "backend" });
        let mut deployment = json!({
            "kind": "Deployment", "metadata": { "name": "svc", "labels": labels },
            "spec": { "template": { "metadata": { "labels": labels },
                "spec": { "containers": [{ "image": "registry.example.com/svc:1" }] } } }
        });
        assert!(check(&deployment, &conventions).is_ok());

        deployment["spec"]["template"]["spec"]["containers"][0]["image"] = json!("registry.example.com.evil.io/svc:1");
        assert!(check(&deployment, &conventions).is_err());
        deployment["spec"]["template"]["spec"]["containers"][0]["image"] = json!("registry.example.com/svc:1");
        deployment["spec"]["template"]["metadata"]["labels"] = json!({});
        assert!(check(&deployment, &conventions).is_err());
    }
}
