//! The rules every rendered manifest keeps: names and namespaces, the organisation's
//! conventions (Pod Security level, labels, image registries), no service account token, a
//! restricted security context, probes, resources, a graceful stop behind a Service, TLS on
//! every Ingress host and token keys over HTTPS. A break fails the render with the manifest and field named.

use anyhow::ensure;
use serde_json::Value;

use super::conventions::Conventions;

/// The rules every manifest of this service keeps.
pub fn check(manifest: &Value, conventions: &Conventions) -> anyhow::Result<()> {
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
    check_labels(manifest, "metadata.labels", conventions)?;
    match kind {
        "Namespace" => require(
            manifest,
            "metadata.labels.pod-security\\.kubernetes\\.io/enforce",
            |value| value == conventions.pod_security.as_str(),
            &format!("must be {} (k8s/conventions.toml)", conventions.pod_security),
        ),
        "ServiceAccount" => require(
            manifest,
            "automountServiceAccountToken",
            |value| value == false,
            "must be false",
        ),
        "Deployment" => {
            check_pod(manifest, "spec.template", conventions)?;
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
                "spec.template.spec.topologySpreadConstraints",
                |value| value.as_array().is_some_and(|list| !list.is_empty()),
                "must spread replicas",
            )
        }
        "Job" => check_pod(manifest, "spec.template", conventions),
        "ConfigMap" => check_token_keys(manifest),
        "Ingress" => check_ingress_tls(manifest),
        "HorizontalPodAutoscaler" => require(
            manifest,
            "apiVersion",
            |value| value == "autoscaling/v2",
            "must be autoscaling/v2",
        ),
        _ => Ok(()),
    }
}

/// A Deployment behind a Service pauses before SIGTERM, so that endpoints drop its pod before
/// it stops accepting connections, and its grace period outlasts the pause.
pub fn check_drain(deployment: &Value) -> anyhow::Result<()> {
    let container = "spec.template.spec.containers.0";
    require(
        deployment,
        &format!("{container}.lifecycle.preStop.sleep.seconds"),
        Value::is_u64,
        "must pause before SIGTERM",
    )?;
    let grace = lookup(deployment, "spec.template.spec.terminationGracePeriodSeconds")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let pause = lookup(deployment, &format!("{container}.lifecycle.preStop.sleep.seconds"))
        .and_then(Value::as_u64)
        .unwrap_or(0);
    ensure!(
        grace > pause,
        "spec.template.spec.terminationGracePeriodSeconds must exceed the preStop pause"
    );
    Ok(())
}

/// The labels of the conventions under `path`.
fn check_labels(manifest: &Value, path: &str, conventions: &Conventions) -> anyhow::Result<()> {
    for (key, value) in &conventions.labels {
        require(
            manifest,
            &format!("{path}.{}", key.replace('.', "\\.")),
            |found| found == value.as_str(),
            &format!("must be {value:?} (k8s/conventions.toml)"),
        )?;
    }
    Ok(())
}

/// A pod template under `template`: the conventions' labels, no token, restricted security
/// context, images from allowed registries, requests and a memory limit.
fn check_pod(manifest: &Value, template: &str, conventions: &Conventions) -> anyhow::Result<()> {
    check_labels(manifest, &format!("{template}.metadata.labels"), conventions)?;
    let spec = format!("{template}.spec");
    let spec = spec.as_str();
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
        require(
            manifest,
            &format!("{container}.image"),
            |image| image.as_str().is_some_and(|image| conventions.allows_image(image)),
            &format!(
                "must come from one of {} (k8s/conventions.toml)",
                conventions.allowed_registries.join(", ")
            ),
        )?;
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

/// Token keys over HTTPS only: every environment here runs in production mode, and a key set
/// fetched in the clear lets whoever is on the path sign tokens the service accepts.
fn check_token_keys(manifest: &Value) -> anyhow::Result<()> {
    let url = lookup(manifest, "data.APP_AUTH__JWKS_URL");
    ensure!(
        url.is_none_or(|url| url.as_str().is_some_and(|url| url.starts_with("https://"))),
        "data.APP_AUTH__JWKS_URL must be an https:// URL"
    );
    require(
        manifest,
        "data.APP_AUTH__JWKS_ALLOW_HTTP",
        |value| value.is_null() || value == "false",
        "must not allow plain HTTP",
    )
}

/// Every host an Ingress routes is served over TLS.
fn check_ingress_tls(manifest: &Value) -> anyhow::Result<()> {
    let hosts_with_tls: Vec<&Value> = lookup(manifest, "spec.tls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|tls| tls["hosts"].as_array())
        .flatten()
        .collect();
    let rules = lookup(manifest, "spec.rules").and_then(Value::as_array);
    for (index, rule) in rules.into_iter().flatten().enumerate() {
        ensure!(
            hosts_with_tls.contains(&&rule["host"]),
            "spec.rules.{index}.host must be listed in spec.tls: the API is served over HTTPS only"
        );
    }
    Ok(())
}

pub fn require(manifest: &Value, path: &str, rule: impl Fn(&Value) -> bool, message: &str) -> anyhow::Result<()> {
    let value = lookup(manifest, path).unwrap_or(&Value::Null);
    ensure!(rule(value), "{} {message}", path.replace("\\.", "."));
    Ok(())
}

/// The value at a dotted path; `\.` is a dot inside a key, numbers index arrays.
pub fn lookup<'a>(manifest: &'a Value, path: &str) -> Option<&'a Value> {
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
    fn a_privileged_container_is_refused_with_its_field_named() {
        let mut job = json!({
            "apiVersion": "batch/v1", "kind": "Job", "metadata": { "name": "m", "namespace": "n" },
            "spec": { "template": { "spec": {
                "automountServiceAccountToken": false,
                "securityContext": { "runAsNonRoot": true, "seccompProfile": { "type": "RuntimeDefault" } },
                "containers": [{
                    "image": "registry.example.com/m:1",
                    "securityContext": { "allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
                        "capabilities": { "drop": ["ALL"] } },
                    "resources": { "requests": { "cpu": "1", "memory": "1Mi" }, "limits": { "memory": "1Mi" } }
                }]
            } } }
        });
        let conventions = Conventions {
            pod_security: "restricted".into(),
            registry: "registry.example.com".into(),
            allowed_registries: vec!["registry.example.com".into()],
            ..Conventions::default()
        };
        assert!(check(&job, &conventions).is_ok());

        job["spec"]["template"]["spec"]["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = json!(true);
        let err = check(&job, &conventions).expect_err("refused").to_string();
        assert_eq!(
            err,
            "spec.template.spec.containers.0.securityContext.allowPrivilegeEscalation must be false"
        );
        job["spec"]["template"]["spec"]["containers"][0]["image"] = json!("docker.io/m:1");
        let err = check(&job, &conventions).expect_err("refused").to_string();
        assert!(err.contains("containers.0.image must come from"), "{err}");
    }

    #[test]
    fn token_keys_over_plain_http_are_refused() {
        let config = |data: Value| json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "c", "namespace": "n" }, "data": data });
        let conventions = Conventions::default();
        let https = config(json!({ "APP_AUTH__JWKS_URL": "https://issuer.example.com/.well-known/jwks.json" }));
        assert!(check(&https, &conventions).is_ok());
        assert!(check(&config(json!({ "APP_LOG__FILTER": "info" })), &conventions).is_ok());

        let http = config(json!({ "APP_AUTH__JWKS_URL": "http://issuer/.well-known/jwks.json" }));
        let err = check(&http, &conventions).expect_err("refused").to_string();
        assert_eq!(err, "data.APP_AUTH__JWKS_URL must be an https:// URL");
        let allowed = config(json!({
            "APP_AUTH__JWKS_URL": "https://issuer.example.com/.well-known/jwks.json",
            "APP_AUTH__JWKS_ALLOW_HTTP": "true",
        }));
        let err = check(&allowed, &conventions).expect_err("refused").to_string();
        assert_eq!(err, "data.APP_AUTH__JWKS_ALLOW_HTTP must not allow plain HTTP");
    }

    #[test]
    fn an_ingress_host_without_tls_is_refused() {
        let mut ingress = json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": { "name": "i", "namespace": "n" },
            "spec": {
                "tls": [{ "hosts": ["api.example.com"], "secretName": "i-tls" }],
                "rules": [{ "host": "api.example.com" }]
            }
        });
        let conventions = Conventions::default();
        assert!(check(&ingress, &conventions).is_ok());

        ingress["spec"]["rules"]
            .as_array_mut()
            .expect("rules")
            .push(json!({ "host": "other.example.com" }));
        let err = check(&ingress, &conventions).expect_err("refused").to_string();
        assert!(err.starts_with("spec.rules.1.host must be listed in spec.tls"), "{err}");
        ingress["spec"].as_object_mut().expect("spec").remove("tls");
        let err = check(&ingress, &conventions).expect_err("refused").to_string();
        assert!(err.starts_with("spec.rules.0.host"), "{err}");
    }

    #[test]
    fn a_deployment_behind_a_service_must_pause_before_it_stops() {
        let mut deployment = json!({ "spec": { "template": { "spec": {
            "terminationGracePeriodSeconds": 10,
            "containers": [{ "lifecycle": { "preStop": { "sleep": { "seconds": 5 } } } }]
        } } } });
        assert!(check_drain(&deployment).is_ok());

        deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = json!(5);
        let err = check_drain(&deployment).expect_err("refused").to_string();
        assert_eq!(
            err,
            "spec.template.spec.terminationGracePeriodSeconds must exceed the preStop pause"
        );
        deployment["spec"]["template"]["spec"]["containers"][0]["lifecycle"] = json!({});
        let err = check_drain(&deployment).expect_err("refused").to_string();
        assert!(
            err.ends_with("preStop.sleep.seconds must pause before SIGTERM"),
            "{err}"
        );
    }

    #[test]
    fn dotted_label_keys_can_be_looked_up() {
        let namespace = json!({ "metadata": { "labels": { "pod-security.kubernetes.io/enforce": "restricted" } } });
        let value = lookup(&namespace, "metadata.labels.pod-security\\.kubernetes\\.io/enforce");
        assert_eq!(value, Some(&json!("restricted")));
    }
}
