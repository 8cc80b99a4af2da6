//! The template's options, read from their one declaration in `cargo-generate.toml`: each
//! placeholder's kind, choices and default, the condition under which it is asked, and the
//! files each condition leaves out. Cases, snapshots and the generator checks read them here,
//! so a new option needs no change to the tooling.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use anyhow::{Context, bail, ensure};

use crate::condition::Condition;

/// Every option, in the order of the declaration, and the conditional files.
#[derive(Debug)]
pub struct Declaration {
    pub options: Vec<Opt>,
    pub switches: Vec<Switch>,
}

/// One placeholder.
#[derive(Debug)]
pub struct Opt {
    pub name: String,
    pub kind: Kind,
    pub default: Value,
    /// Asked only when this holds; otherwise the option is off (see [`Declaration::complete`]).
    pub asked_when: Option<Condition>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Kind {
    /// Free text, checked by the pre hook; not enumerated into cases.
    Text,
    Choice(Vec<String>),
    Bool,
}

/// The value of an option.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Value {
    Text(String),
    Bool(bool),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Text(text) => f.write_str(text),
            Self::Bool(value) => write!(f, "{value}"),
        }
    }
}

/// Files left out of the generated service when `condition` holds.
#[derive(Debug)]
pub struct Switch {
    pub condition: Condition,
    pub ignore: Vec<String>,
}

/// A value for every enumerable (choice and bool) option: one generated service's shape.
pub type Shape = BTreeMap<String, Value>;

impl Opt {
    /// The values a case can give this option; empty for free text.
    pub fn values(&self) -> Vec<Value> {
        match &self.kind {
            Kind::Text => Vec::new(),
            Kind::Choice(choices) => choices.iter().cloned().map(Value::Text).collect(),
            Kind::Bool => vec![Value::Bool(true), Value::Bool(false)],
        }
    }

    /// The value an option takes when it is not asked: off for a bool, the default otherwise.
    fn unasked(&self) -> Value {
        match self.kind {
            Kind::Bool => Value::Bool(false),
            _ => self.default.clone(),
        }
    }

    /// Parses `raw` (as given with `-d name=raw`) as a value of this option.
    pub fn parse(&self, raw: &str) -> anyhow::Result<Value> {
        match &self.kind {
            Kind::Text => Ok(Value::Text(raw.to_owned())),
            Kind::Choice(choices) => {
                ensure!(
                    choices.iter().any(|choice| choice == raw),
                    "{raw:?} is not a value of {}: use one of {}",
                    self.name,
                    choices.join(", ")
                );
                Ok(Value::Text(raw.to_owned()))
            }
            Kind::Bool => match raw {
                "true" => Ok(Value::Bool(true)),
                "false" => Ok(Value::Bool(false)),
                _ => bail!("{raw:?} is not a value of {}: use true or false", self.name),
            },
        }
    }
}

impl Declaration {
    /// Reads `cargo-generate.toml` in `root`.
    pub fn load(root: &Path) -> anyhow::Result<Self> {
        let path = root.join("cargo-generate.toml");
        let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("in {}", path.display()))
    }

    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let table: toml::Table = toml::from_str(text)?;
        let mut options = Vec::new();
        for (name, spec) in table
            .get("placeholders")
            .and_then(toml::Value::as_table)
            .into_iter()
            .flatten()
        {
            options.push(Opt::declared(name, spec, None)?);
        }
        let mut switches = Vec::new();
        for (condition, body) in table
            .get("conditional")
            .and_then(toml::Value::as_table)
            .into_iter()
            .flatten()
        {
            let parsed = Condition::parse(condition).with_context(|| format!("condition {condition:?}"))?;
            for (name, spec) in body
                .get("placeholders")
                .and_then(toml::Value::as_table)
                .into_iter()
                .flatten()
            {
                options.push(Opt::declared(name, spec, Some(parsed.clone()))?);
            }
            if let Some(ignore) = body.get("ignore").and_then(toml::Value::as_array) {
                let ignore = ignore
                    .iter()
                    .map(|entry| entry.as_str().map(str::to_owned).context("ignore entries are paths"))
                    .collect::<anyhow::Result<_>>()?;
                switches.push(Switch {
                    condition: parsed,
                    ignore,
                });
            }
        }
        let declaration = Self { options, switches };
        declaration.check()?;
        Ok(declaration)
    }

    /// Conditions may only name options declared before them, with values they can take.
    fn check(&self) -> anyhow::Result<()> {
        for (index, option) in self.options.iter().enumerate() {
            if let Some(condition) = &option.asked_when {
                for (name, value) in condition.literals() {
                    let known = self.options[..index].iter().find(|earlier| earlier.name == name);
                    let known = known.with_context(|| {
                        format!(
                            "{} is asked when {condition}, but {name} is not declared before it",
                            option.name
                        )
                    })?;
                    if let Some(value) = value {
                        known.parse(&value.to_string())?;
                    }
                }
            }
        }
        for switch in &self.switches {
            for (name, _) in switch.condition.literals() {
                ensure!(
                    self.option(&name).is_some(),
                    "condition {} names {name}, which is not an option",
                    switch.condition
                );
            }
        }
        Ok(())
    }

    pub fn option(&self, name: &str) -> Option<&Opt> {
        self.options.iter().find(|option| option.name == name)
    }

    /// The options a case can vary: choices and bools.
    pub fn enumerable(&self) -> impl Iterator<Item = &Opt> {
        self.options.iter().filter(|option| option.kind != Kind::Text)
    }

    /// The shape `values` give: defaults for the rest, and options that are not asked off.
    /// Setting an option that is not asked is an error, as the pre hook makes it.
    pub fn complete(&self, values: &BTreeMap<String, Value>) -> anyhow::Result<Shape> {
        for name in values.keys() {
            ensure!(self.option(name).is_some(), "{name} is not an option of the template");
        }
        let mut shape = Shape::new();
        for option in self.enumerable() {
            let asked = option
                .asked_when
                .as_ref()
                .is_none_or(|condition| condition.holds(&shape));
            let value = match (asked, values.get(&option.name)) {
                (true, Some(value)) => value.clone(),
                (true, None) => option.default.clone(),
                (false, None) => option.unasked(),
                (false, Some(_)) => bail!(
                    "{} does not apply unless {}",
                    option.name,
                    option.asked_when.as_ref().map(ToString::to_string).unwrap_or_default()
                ),
            };
            shape.insert(option.name.clone(), value);
        }
        Ok(shape)
    }

    /// The shape `-d key=value` pairs give, checked against the declaration: an unknown
    /// option, a value it cannot take and an option set where it does not apply are errors.
    pub fn shape_of(&self, defines: &[(String, String)]) -> anyhow::Result<Shape> {
        let mut values = BTreeMap::new();
        for (key, raw) in defines {
            let option = self.option(key).with_context(|| {
                let known: Vec<&str> = self.options.iter().map(|option| option.name.as_str()).collect();
                format!(
                    "{key} is not an option of the template; the options are: {}",
                    known.join(", ")
                )
            })?;
            let value = option.parse(raw)?;
            if option.kind != Kind::Text {
                values.insert(key.clone(), value);
            }
        }
        self.complete(&values)
    }

    /// The values of `shape` a user is asked for (and may pass with `-d`), in order.
    pub fn asked(&self, shape: &Shape) -> Shape {
        let mut asked = Shape::new();
        for option in self.enumerable() {
            let is_asked = option
                .asked_when
                .as_ref()
                .is_none_or(|condition| condition.holds(shape));
            if is_asked && let Some(value) = shape.get(&option.name) {
                asked.insert(option.name.clone(), value.clone());
            }
        }
        asked
    }

    /// Every shape a user can generate, in the order of the declaration's values.
    pub fn all_shapes(&self) -> Vec<Shape> {
        let mut shapes = vec![Shape::new()];
        for option in self.enumerable() {
            let mut next = Vec::new();
            for shape in &shapes {
                let asked = option
                    .asked_when
                    .as_ref()
                    .is_none_or(|condition| condition.holds(shape));
                let values = if asked { option.values() } else { vec![option.unasked()] };
                for value in values {
                    let mut extended = shape.clone();
                    extended.insert(option.name.clone(), value);
                    next.push(extended);
                }
            }
            shapes = next;
        }
        shapes
    }

    /// The shapes the derived files are computed from: for each value of each choice, every
    /// bool that is asked on; then each of those with one bool turned off. Their number grows
    /// with the number of options, not of their combinations.
    pub fn sample_shapes(&self) -> Vec<Shape> {
        let mut bases: Vec<Shape> = Vec::new();
        let choices: Vec<&Opt> = self
            .enumerable()
            .filter(|option| matches!(option.kind, Kind::Choice(_)))
            .collect();
        let maximal = |fixed: &BTreeMap<String, Value>| -> Option<Shape> {
            let mut values = fixed.clone();
            for option in self.enumerable().filter(|option| option.kind == Kind::Bool) {
                values.insert(option.name.clone(), Value::Bool(true));
                if self.complete(&values).is_err() {
                    values.remove(&option.name);
                }
            }
            self.complete(&values).ok()
        };
        for choice in &choices {
            for value in choice.values() {
                let fixed = BTreeMap::from([(choice.name.clone(), value)]);
                if let Some(shape) = maximal(&fixed)
                    && !bases.contains(&shape)
                {
                    bases.push(shape);
                }
            }
        }
        if bases.is_empty() {
            bases.extend(maximal(&BTreeMap::new()));
        }
        let mut shapes = bases.clone();
        for base in &bases {
            for option in self.enumerable().filter(|option| option.kind == Kind::Bool) {
                if base.get(&option.name) != Some(&Value::Bool(true)) {
                    continue;
                }
                let mut values = base.clone();
                values.insert(option.name.clone(), Value::Bool(false));
                // Options asked only because this one is on are no longer asked.
                if let Ok(shape) = self.complete(&self.asked(&values))
                    && !shapes.contains(&shape)
                {
                    shapes.push(shape);
                }
            }
        }
        shapes
    }

    /// Shapes that, with `covered`, put every pair of values of any two options that some
    /// shape can have into at least one shape: greedy, taking the shape that covers the most
    /// pairs still missing, the first in declaration order on a tie.
    pub fn pairwise(&self, covered: &[Shape]) -> Vec<Shape> {
        let all = self.all_shapes();
        let mut missing: Vec<(String, Value, String, Value)> = Vec::new();
        for shape in &all {
            for pair in pairs(shape) {
                if !missing.contains(&pair) {
                    missing.push(pair);
                }
            }
        }
        for shape in covered {
            missing.retain(|pair| !pairs(shape).contains(pair));
        }
        let mut chosen = Vec::new();
        while !missing.is_empty() {
            let Some(best) = all
                .iter()
                .max_by_key(|shape| {
                    let new = pairs(shape).iter().filter(|pair| missing.contains(pair)).count();
                    // `max_by_key` keeps the last of equals; prefer the first.
                    (new, std::cmp::Reverse(all.iter().position(|other| other == *shape)))
                })
                .cloned()
            else {
                break;
            };
            missing.retain(|pair| !pairs(&best).contains(pair));
            chosen.push(best);
        }
        chosen
    }
}

/// Every pair of (option, value) in `shape`, options in name order.
fn pairs(shape: &Shape) -> Vec<(String, Value, String, Value)> {
    let entries: Vec<_> = shape.iter().collect();
    let mut pairs = Vec::new();
    for (index, (first, first_value)) in entries.iter().enumerate() {
        for (second, second_value) in &entries[index + 1..] {
            pairs.push((
                (*first).clone(),
                (*first_value).clone(),
                (*second).clone(),
                (*second_value).clone(),
            ));
        }
    }
    pairs
}

impl Opt {
    fn declared(name: &str, spec: &toml::Value, asked_when: Option<Condition>) -> anyhow::Result<Self> {
        let spec = spec
            .as_table()
            .with_context(|| format!("placeholder {name} is not a table"))?;
        let kind = match (spec.get("type").and_then(toml::Value::as_str), spec.get("choices")) {
            (Some("bool"), _) => Kind::Bool,
            (Some("string"), Some(choices)) => Kind::Choice(
                choices
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|choice| choice.as_str().map(str::to_owned).context("choices are strings"))
                    .collect::<anyhow::Result<_>>()?,
            ),
            (Some("string"), None) => Kind::Text,
            (other, _) => bail!("placeholder {name} has type {other:?}; the tooling knows string and bool"),
        };
        let default = match spec.get("default") {
            Some(toml::Value::Boolean(value)) if kind == Kind::Bool => Value::Bool(*value),
            Some(toml::Value::String(text)) if kind != Kind::Bool => Value::Text(text.clone()),
            other => bail!("placeholder {name} needs a default of its type, not {other:?}"),
        };
        let option = Self {
            name: name.to_owned(),
            kind,
            default,
            asked_when,
        };
        if let Kind::Choice(_) = option.kind {
            option.parse(&option.default.to_string()).context("its default")?;
        }
        Ok(option)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) const DECLARATION: &str = r#"
        [placeholders.description]
        type = "string"
        prompt = "Description"
        default = "A service"

        [placeholders.auth]
        type = "string"
        prompt = "Auth"
        choices = ["issuer", "verifier", "none"]
        default = "issuer"

        [conditional.'auth != "none"'.placeholders.example]
        type = "bool"
        prompt = "Example?"
        default = true

        [placeholders.jobs]
        type = "bool"
        prompt = "Jobs?"
        default = false

        [conditional.'auth == "none" || example == false']
        ignore = ["src/projects.rs"]
    "#;

    fn shape(values: &[(&str, Value)]) -> Shape {
        values
            .iter()
            .map(|(name, value)| ((*name).to_owned(), value.clone()))
            .collect()
    }

    fn text(value: &str) -> Value {
        Value::Text(value.to_owned())
    }

    #[test]
    fn the_declaration_gives_kinds_defaults_and_conditions() {
        let declaration = Declaration::parse(DECLARATION).expect("valid");

        let names: Vec<_> = declaration.enumerable().map(|option| option.name.as_str()).collect();
        assert_eq!(names, ["auth", "jobs", "example"]);
        assert_eq!(declaration.option("description").map(|o| &o.kind), Some(&Kind::Text));
        assert_eq!(declaration.switches[0].ignore, ["src/projects.rs"]);
    }

    #[test]
    fn an_option_that_is_not_asked_is_off_and_may_not_be_set() {
        let declaration = Declaration::parse(DECLARATION).expect("valid");

        let none = declaration.complete(&shape(&[("auth", text("none"))])).expect("valid");
        assert_eq!(none.get("example"), Some(&Value::Bool(false)));
        let refused = declaration.complete(&shape(&[("auth", text("none")), ("example", Value::Bool(true))]));
        assert!(refused.is_err());
        assert_eq!(declaration.all_shapes().len(), 2 * 2 + 2 * 2 + 2);
    }

    #[test]
    fn pairwise_shapes_cover_every_possible_pair() {
        let declaration = Declaration::parse(DECLARATION).expect("valid");
        let named = vec![declaration.complete(&BTreeMap::new()).expect("defaults")];

        let chosen = declaration.pairwise(&named);

        let all = declaration.all_shapes();
        let covering: Vec<&Shape> = named.iter().chain(&chosen).collect();
        for shape in &all {
            for pair in pairs(shape) {
                assert!(
                    covering.iter().any(|shape| pairs(shape).contains(&pair)),
                    "{pair:?} not covered"
                );
            }
        }
        assert!(chosen.len() < all.len(), "pairwise should need fewer than all shapes");
        assert!(!chosen.contains(&named[0]), "a named case is not repeated");
    }

    #[test]
    fn samples_grow_with_options_not_combinations() {
        let declaration = Declaration::parse(DECLARATION).expect("valid");

        let samples = declaration.sample_shapes();

        // Three values of auth with every bool on, then issuer and verifier without the
        // example, and all three without jobs.
        assert_eq!(samples.len(), 3 + 2 + 3, "{samples:#?}");
        assert!(samples.contains(&shape(&[
            ("auth", text("verifier")),
            ("example", Value::Bool(false)),
            ("jobs", Value::Bool(true)),
        ])));
    }

    #[test]
    fn conditions_on_undeclared_options_are_refused() {
        let declaration = r#"
            [conditional.'cache'.placeholders.example]
            type = "bool"
            prompt = "x"
            default = true
        "#;

        assert!(Declaration::parse(declaration).is_err());
    }
}
