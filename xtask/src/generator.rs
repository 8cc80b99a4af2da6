//! The checks of the generator itself, derived from the option declaration: every template
//! variable is defined, bad names and values are refused with a message that says what is
//! allowed, and a generated service holds exactly the files its options switch on.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{Context, bail, ensure};
use xshell::Shell;

use crate::cases::Case;
use crate::generate::{self, files, scratch_dir};
use crate::options::{Declaration, Kind};

/// Variables cargo-generate defines by itself.
const BUILT_IN: [&str; 6] = [
    "project-name",
    "crate_name",
    "crate_type",
    "authors",
    "username",
    "os-arch",
];

/// cargo-generate renders an undefined variable as an empty string without a word, so every
/// variable the template uses must be a placeholder, a built-in or set by a hook.
pub fn check_variables_are_defined(root: &Path, declaration: &Declaration) -> anyhow::Result<()> {
    let mut defined: BTreeSet<String> = declaration.options.iter().map(|option| option.name.clone()).collect();
    defined.extend(BUILT_IN.map(str::to_owned));
    for hook in files(&root.join("hooks"))? {
        let text = std::fs::read_to_string(&hook)?;
        defined.extend(
            text.split("variable::set(\"")
                .skip(1)
                .filter_map(|rest| rest.split('"').next())
                .map(str::to_owned),
        );
    }
    let mut undefined = BTreeSet::new();
    for file in files(&root.join("template"))? {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        let name = file.strip_prefix(root).unwrap_or(&file).display().to_string();
        for variable in liquid_variables(&text).into_iter().chain(liquid_variables(&name)) {
            if !defined.contains(&variable) {
                undefined.insert(format!("{variable} (in {name})"));
            }
        }
    }
    ensure!(
        undefined.is_empty(),
        "template variables with no definition: {}",
        undefined.into_iter().collect::<Vec<_>>().join(", ")
    );
    println!(
        "every template variable is defined ({})",
        defined.into_iter().collect::<Vec<_>>().join(", ")
    );
    Ok(())
}

/// The variables a text uses in `{{ var }}` outputs and `{% if var %}` tags.
fn liquid_variables(text: &str) -> Vec<String> {
    let identifier = |rest: &str| -> String {
        rest.trim_start_matches(['-', ' '])
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
            .collect::<String>()
            .trim_end_matches('-')
            .to_owned()
    };
    let mut variables = Vec::new();
    // `${{ }}` is GitHub Actions syntax, not Liquid.
    let text = text.replace("${{", "");
    for output in text.split("{{").skip(1) {
        variables.push(identifier(output));
    }
    for tag in text.split("{%").skip(1) {
        let tag = tag.trim_start_matches(['-', ' ']);
        for keyword in ["if ", "elsif ", "unless "] {
            if let Some(rest) = tag.strip_prefix(keyword) {
                let condition = rest.split("%}").next().unwrap_or_default();
                for part in condition.split([' ']).filter(|part| !part.is_empty()) {
                    let candidate = identifier(part);
                    let is_keyword = ["and", "or", "true", "false", "contains"].contains(&candidate.as_str());
                    if !is_keyword && !part.starts_with('"') && !["==", "!="].contains(&part) {
                        variables.push(candidate);
                    }
                }
            }
        }
    }
    variables.retain(|variable| !variable.is_empty());
    variables
}

/// The README's options table names every declared option with its default, and every value
/// of a choice, so the documentation cannot fall behind the declaration.
pub fn check_options_table(root: &Path, declaration: &Declaration) -> anyhow::Result<()> {
    let readme = std::fs::read_to_string(root.join("README.md"))?;
    let rows: Vec<Vec<String>> = readme
        .lines()
        .skip_while(|line| !line.starts_with("| Option |"))
        .skip(2)
        .take_while(|line| line.starts_with('|'))
        .map(|line| {
            line.trim_matches('|')
                .split(" | ")
                .map(|cell| cell.trim().to_owned())
                .collect()
        })
        .collect();
    ensure!(
        !rows.is_empty(),
        "README.md has no options table (| Option | Default | Meaning |)"
    );
    let documented: Vec<String> = rows
        .iter()
        .map(|row| row[0].trim_matches('`').to_owned())
        .filter(|name| name != "project-name")
        .collect();
    let declared: Vec<String> = declaration.options.iter().map(|option| option.name.clone()).collect();
    let mut problems = Vec::new();
    for name in declared.iter().filter(|name| !documented.contains(name)) {
        problems.push(format!("{name} is not in the table"));
    }
    for name in documented.iter().filter(|name| !declared.contains(name)) {
        problems.push(format!("{name} is in the table but not declared"));
    }
    for (row, option) in rows
        .iter()
        .filter_map(|row| declaration.option(row[0].trim_matches('`')).map(|option| (row, option)))
    {
        let default = format!("`{}`", option.default);
        if row.get(1) != Some(&default) {
            problems.push(format!(
                "{}: the default is {default}, the table says {:?}",
                option.name,
                row.get(1)
            ));
        }
        if let Kind::Choice(choices) = &option.kind {
            let meaning = row.get(2).map(String::as_str).unwrap_or_default();
            for choice in choices
                .iter()
                .filter(|choice| !meaning.contains(&format!("`{choice}`")))
            {
                problems.push(format!("{}: the table does not explain `{choice}`", option.name));
            }
        }
    }
    ensure!(
        problems.is_empty(),
        "README.md's options table disagrees with cargo-generate.toml: {}",
        problems.join("; ")
    );
    println!("the README's options table matches the declaration");
    Ok(())
}

/// A project name, template values, and what the refusal must say.
type Refusal = (String, Vec<(String, String)>, String);

/// Invalid names and values stop generation with a message that says what is allowed: the
/// pre hook's rules for the name and the free-text options, then, from the declaration, a
/// value outside every option's choices, and every option set where it does not apply.
pub fn check_bad_input_is_refused(sh: &Shell, root: &Path, declaration: &Declaration) -> anyhow::Result<()> {
    let dest = scratch_dir("refused")?;
    let owned = |name: &str, values: &[(&str, &str)], expected: &str| -> Refusal {
        (
            name.to_owned(),
            values.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
            expected.to_owned(),
        )
    };
    let mut bad: Vec<Refusal> = vec![
        owned(
            "my_service",
            &[],
            "invalid project name \"my_service\": use 2 to 40 lowercase letters",
        ),
        owned("9lives", &[], "invalid project name \"9lives\""),
        owned("xtask", &[], "invalid project name \"xtask\""),
        owned(
            "a-very-long-service-name-that-goes-on-and-on",
            &[],
            "use 2 to 40 lowercase letters",
        ),
        owned(
            "ok-name",
            &[("http_port", "80")],
            "invalid http_port \"80\": use a number from 1024 to 65535",
        ),
        owned("ok-name", &[("http_port", "eighty")], "invalid http_port \"eighty\""),
        owned(
            "ok-name",
            &[("description", "say \"hi\"")],
            "use plain text without quotes",
        ),
    ];
    for option in declaration.enumerable() {
        let (value, expected) = match option.kind {
            Kind::Bool => ("maybe", "`true` or `false`".to_owned()),
            _ => (
                "no-such-value",
                format!("\"no-such-value\" is not a valid value for {}", option.name),
            ),
        };
        bad.push((
            "ok-name".to_owned(),
            vec![(option.name.clone(), value.to_owned())],
            expected,
        ));
        // Set where its condition does not hold: the shapes where it is not asked.
        let Some(condition) = &option.asked_when else {
            continue;
        };
        let shape = declaration
            .all_shapes()
            .into_iter()
            .find(|shape| !condition.holds(shape))
            .with_context(|| format!("{} is asked in every shape", option.name))?;
        let mut values: Vec<(String, String)> = declaration
            .asked(&shape)
            .iter()
            .map(|(name, value)| (name.clone(), value.to_string()))
            .collect();
        values.push((option.name.clone(), option.default.to_string()));
        bad.push(("ok-name".to_owned(), values, format!("{} does not apply", option.name)));
    }
    for (name, values, expected) in &bad {
        let generated = generate::generate(sh, root, name, values, &dest)?;
        let reason = generated.failure_reason();
        if generated.success || !reason.contains(expected.as_str()) {
            bail!(
                "generating {name:?} with {values:?} should fail saying {expected:?}; got:\n{}",
                generated.output
            );
        }
        println!("refused {name:?} {values:?}: {reason}");
    }
    let left: Vec<_> = std::fs::read_dir(&dest)?
        .flatten()
        .map(|entry| entry.file_name())
        .collect();
    ensure!(left.is_empty(), "refused generations left {left:?} behind");
    Ok(())
}

/// The generated service carries the values asked for, no Liquid syntax, and exactly the
/// files its options switch on.
pub fn check_rendered(project: &Path, case: &Case, declaration: &Declaration) -> anyhow::Result<()> {
    let mut leftovers = Vec::new();
    for file in files(project)? {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        // `${{ }}` is GitHub Actions syntax, not Liquid.
        if text.replace("${{", "").contains("{{") || text.contains("{%") {
            leftovers.push(relative(project, &file));
        }
    }
    ensure!(
        leftovers.is_empty(),
        "template syntax left in: {}",
        leftovers.join(", ")
    );

    let manifest = std::fs::read_to_string(project.join("Cargo.toml"))?;
    ensure!(
        manifest.contains(&format!("name = \"{}\"", case.name)),
        "Cargo.toml does not carry the project name"
    );
    if let Some(description) = case.define("description") {
        ensure!(
            manifest.contains(&format!("description = \"{description}\"")),
            "Cargo.toml lacks the description"
        );
    }
    if let Some(port) = case.define("http_port") {
        let config = std::fs::read_to_string(project.join("config").join("production.toml"))?;
        ensure!(
            config.contains(&format!("port = {port}")),
            "config/production.toml lacks port {port}"
        );
    }
    // A path is left out when a switch that holds names it or a folder above it.
    let left_out: Vec<&str> = declaration
        .switches
        .iter()
        .filter(|switch| switch.condition.holds(&case.shape))
        .flat_map(|switch| switch.ignore.iter().map(String::as_str))
        .collect();
    for path in declaration.switches.iter().flat_map(|switch| &switch.ignore) {
        let off = left_out.iter().any(|out| Path::new(path).starts_with(out));
        let exists = project.join(path).exists();
        ensure!(
            exists != off,
            "{path} is {} in a service with {}",
            if exists { "there" } else { "missing" },
            case.summary()
        );
    }
    Ok(())
}

fn relative(root: &Path, path: &Path) -> String {
    path.strip_prefix(root).unwrap_or(path).display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn liquid_variables_are_found_in_outputs_and_conditions() {
        let text = r#"name = "{{project-name}}" {{ description | upcase }} {%- if example %}x{% endif %}{% if auth == "issuer" and jobs %} ${{ github.ref }}"#;
        assert_eq!(
            liquid_variables(text),
            ["project-name", "description", "example", "auth", "jobs"]
        );
    }
}
