//! The option sets `cargo xtask test` generates: the named cases of `xtask/cases/*.toml`, then
//! the pairwise cases the declaration adds so that every pair of values of any two options is
//! in at least one generated service.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, ensure};
use serde::Deserialize;

use crate::options::{Declaration, Shape, Value};

/// A case file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseFile {
    /// What the case covers.
    about: String,
    name: String,
    #[serde(default)]
    containers: bool,
    #[serde(default)]
    bench: bool,
    #[serde(default)]
    values: BTreeMap<String, toml::Value>,
}

/// One service to generate and check.
#[derive(Debug)]
pub struct Case {
    pub id: String,
    pub about: String,
    /// The project name to generate.
    pub name: String,
    /// Also check the container image and the tests through testcontainers (needs podman).
    pub containers: bool,
    /// Also run the benchmarks once, briefly: criterion and the HTTP load benchmark.
    pub bench: bool,
    /// The values passed to cargo-generate, as `-d key=value`.
    pub defines: Vec<(String, String)>,
    /// Every enumerable option's value, defaults and unasked options included.
    pub shape: Shape,
}

impl Case {
    /// Whether choice `option` has `value`.
    pub fn is(&self, option: &str, value: &str) -> bool {
        self.shape.get(option) == Some(&Value::Text(value.to_owned()))
    }

    /// Whether bool `option` is on.
    pub fn on(&self, option: &str) -> bool {
        self.shape.get(option) == Some(&Value::Bool(true))
    }

    /// A value passed with `-d`, such as `http_port`.
    pub fn define(&self, key: &str) -> Option<&str> {
        self.defines
            .iter()
            .find(|(known, _)| known == key)
            .map(|(_, value)| value.as_str())
    }

    /// The enumerable values, `auth=issuer example=true`.
    pub fn summary(&self) -> String {
        self.shape
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// The named cases in `root/xtask/cases`, by file name, then the pairwise ones.
pub fn load(root: &Path, declaration: &Declaration) -> anyhow::Result<Vec<Case>> {
    let dir = root.join("xtask").join("cases");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .map(|entry| entry.map(|entry| entry.path()))
        .collect::<Result<_, _>>()?;
    paths.retain(|path| path.extension().is_some_and(|extension| extension == "toml"));
    paths.sort();
    let mut cases = Vec::new();
    for path in paths {
        let id = path
            .file_stem()
            .and_then(|stem| stem.to_str())
            .context("case file names are text")?
            .to_owned();
        let text = std::fs::read_to_string(&path)?;
        let file: CaseFile = toml::from_str(&text).with_context(|| format!("invalid case file {}", path.display()))?;
        cases.push(named(id, file, declaration).with_context(|| format!("in {}", path.display()))?);
    }
    let covered: Vec<Shape> = cases.iter().map(|case| case.shape.clone()).collect();
    for (index, shape) in declaration.pairwise(&covered).into_iter().enumerate() {
        cases.push(pairwise(index + 1, shape, declaration));
    }
    Ok(cases)
}

fn named(id: String, file: CaseFile, declaration: &Declaration) -> anyhow::Result<Case> {
    let defines: Vec<(String, String)> = file
        .values
        .into_iter()
        .map(|(key, value)| {
            let raw = match value {
                toml::Value::String(text) => text,
                other => other.to_string(),
            };
            (key, raw)
        })
        .collect();
    Ok(Case {
        id,
        about: file.about,
        name: file.name,
        containers: file.containers,
        bench: file.bench,
        shape: declaration.shape_of(&defines)?,
        defines,
    })
}

/// A pairwise case passes every value that is asked, so the case does not depend on defaults.
fn pairwise(number: usize, shape: Shape, declaration: &Declaration) -> Case {
    let asked = declaration.asked(&shape);
    let defines = asked
        .iter()
        .map(|(name, value)| (name.clone(), value.to_string()))
        .collect();
    let case = Case {
        id: format!("pairwise-{number}"),
        about: String::new(),
        name: format!("pairwise-{number}-svc"),
        containers: false,
        bench: false,
        defines,
        shape,
    };
    Case {
        about: format!("pairs of option values the named cases miss: {}", case.summary()),
        ..case
    }
}

/// The cases named in `only`, or all of them; an unknown name is an error listing the known.
pub fn select(cases: Vec<Case>, only: &[String]) -> anyhow::Result<Vec<Case>> {
    for id in only {
        ensure!(
            cases.iter().any(|case| &case.id == id),
            "no case {id:?}; the cases are: {}",
            cases.iter().map(|case| case.id.as_str()).collect::<Vec<_>>().join(", ")
        );
    }
    let selected: Vec<Case> = if only.is_empty() {
        cases
    } else {
        cases.into_iter().filter(|case| only.contains(&case.id)).collect()
    };
    ensure!(!selected.is_empty(), "no cases");
    Ok(selected)
}

/// `cargo xtask test --list`: each case, what it sets and what else it checks.
pub fn print(cases: &[Case], json: bool) -> anyhow::Result<()> {
    if json {
        let ids: Vec<&str> = cases.iter().map(|case| case.id.as_str()).collect();
        println!("{}", serde_json::to_string(&ids)?);
        return Ok(());
    }
    for case in cases {
        let mut extra = Vec::new();
        if case.containers {
            extra.push("containers");
        }
        if case.bench {
            extra.push("bench");
        }
        let extra = if extra.is_empty() {
            String::new()
        } else {
            format!(" (+{})", extra.join(", "))
        };
        println!("{:<12} {}{extra}", case.id, case.about);
        println!("{:<12} {}", "", case.summary());
    }
    Ok(())
}
