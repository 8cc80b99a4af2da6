//! The organisation's Kubernetes conventions (`k8s/conventions.toml`, from the template): the
//! Pod Security level, the image registries, the labels on every object and the default
//! resources. The renderer takes values from them and the rules enforce them.

use std::collections::BTreeMap;

use anyhow::{Context, ensure};

use crate::project;

#[derive(Debug, Clone, Default)]
pub struct Conventions {
    pub pod_security: String,
    /// The registry of the environments' default images.
    pub registry: String,
    /// Registries a manifest may pull from.
    pub allowed_registries: Vec<String>,
    pub labels: BTreeMap<String, String>,
    /// Defaults for the environments' `cpu_request`, `memory_request` and `memory_limit`.
    pub resources: BTreeMap<String, String>,
}

impl Conventions {
    pub fn load() -> anyhow::Result<Self> {
        let path = project::root().join("k8s").join("conventions.toml");
        let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        Self::parse(&text).context("k8s/conventions.toml")
    }

    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let table: toml::Table = toml::from_str(text)?;
        let text = |value: &toml::Value, key: &str| -> anyhow::Result<String> {
            value
                .as_str()
                .map(str::to_owned)
                .with_context(|| format!("{key} must be text"))
        };
        let section = |name: &str| -> anyhow::Result<BTreeMap<String, String>> {
            table
                .get(name)
                .and_then(toml::Value::as_table)
                .into_iter()
                .flatten()
                .map(|(key, value)| Ok((key.clone(), text(value, &format!("{name}.{key}"))?)))
                .collect()
        };
        let images = table.get("images").context("no [images]")?;
        let conventions = Self {
            pod_security: text(table.get("pod_security").context("no pod_security")?, "pod_security")?,
            registry: text(images.get("registry").context("no images.registry")?, "images.registry")?,
            allowed_registries: images
                .get("allowed")
                .and_then(toml::Value::as_array)
                .context("no images.allowed")?
                .iter()
                .map(|value| text(value, "images.allowed"))
                .collect::<anyhow::Result<_>>()?,
            labels: section("labels")?,
            resources: section("resources")?,
        };
        ensure!(
            ["privileged", "baseline", "restricted"].contains(&conventions.pod_security.as_str()),
            "pod_security must be privileged, baseline or restricted, not {:?}",
            conventions.pod_security
        );
        ensure!(
            conventions.allowed_registries.contains(&conventions.registry),
            "images.allowed must include images.registry ({})",
            conventions.registry
        );
        Ok(conventions)
    }

    /// Whether `image` comes from an allowed registry.
    pub fn allows_image(&self, image: &str) -> bool {
        self.allowed_registries.iter().any(|registry| {
            image
                .strip_prefix(registry.as_str())
                .is_some_and(|rest| rest.starts_with('/'))
        })
    }

    /// The values templates may use: `registry`, `pod_security`, the default resources, and
    /// `common_labels` as YAML lines.
    pub fn values(&self) -> BTreeMap<String, String> {
        let mut values = self.resources.clone();
        values.insert("registry".into(), self.registry.clone());
        values.insert("pod_security".into(), self.pod_security.clone());
        let labels: Vec<String> = self
            .labels
            .iter()
            .map(|(key, value)| format!("{key}: {}", serde_json::Value::from(value.as_str())))
            .collect();
        values.insert("common_labels".into(), labels.join("\n"));
        values
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONVENTIONS: &str = r#"
        pod_security = "restricted"
        [images]
        registry = "registry.example.com"
        allowed = ["registry.example.com", "ghcr.io"]
        [labels]
        "example.com/team" = "backend"
        [resources]
        cpu_request = "100m"
    "#;

    #[test]
    fn images_come_only_from_allowed_registries() {
        let conventions = Conventions::parse(CONVENTIONS).expect("valid");

        assert!(conventions.allows_image("registry.example.com/svc:1"));
        assert!(conventions.allows_image("ghcr.io/org/svc:1"));
        assert!(!conventions.allows_image("registry.example.com.evil.io/svc:1"));
        assert!(!conventions.allows_image("docker.io/library/svc:1"));
        assert_eq!(conventions.values()["common_labels"], "example.com/team: \"backend\"");
    }

    #[test]
    fn an_unknown_pod_security_level_is_refused() {
        let text = CONVENTIONS.replace("\"restricted\"", "\"strict\"");

        let err = Conventions::parse(&text).expect_err("refused").to_string();
        assert!(err.contains("pod_security"), "{err}");
    }
}
