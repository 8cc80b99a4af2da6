//! Adding an option, as a forker does it (README, "Adding an option"), to a scratch copy of
//! the template: one declaration, one conditional file, one seam line, one README row. The
//! cases, the snapshot shapes and the generator checks must pick it up with no change to the
//! tooling.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, ensure};
use xshell::{Shell, cmd};

use crate::cases::{self, Case};
use crate::generate::{self, repo_root, scratch_dir};
use crate::generator;
use crate::options::{Declaration, Value};

const OPTION: &str = "greeting";

const DECLARATION: &str = r#"
[placeholders.greeting]
type = "bool"
prompt = "Add a greeting module?"
default = false

[conditional.'greeting == false']
ignore = ["src/greeting.rs"]
"#;

const FILE: &str =
    "//! A greeting, there only with the `greeting` option.\n\npub fn greeting() -> &'static str {\n    \"hello\"\n}\n";
const SEAM: &str = "{% if greeting %}pub mod greeting;\n{% endif %}";
const ROW: &str = "| `greeting` | `false` | Add a greeting module. |";

pub fn check(sh: &Shell) -> anyhow::Result<()> {
    let root = scratch_dir("throwaway")?;
    let repo = repo_root();
    for entry in ["cargo-generate.toml", "hooks", "template", "README.md"] {
        cmd!(sh, "cp -R {repo}/{entry} {root}/").quiet().run()?;
    }
    std::fs::create_dir_all(root.join("xtask"))?;
    cmd!(sh, "cp -R {repo}/xtask/cases {root}/xtask/").quiet().run()?;
    append(&root.join("cargo-generate.toml"), DECLARATION)?;
    std::fs::write(root.join("template/src/greeting.rs"), FILE)?;
    append(&root.join("template/src/lib.rs"), SEAM)?;

    let declaration = Declaration::load(&root)?;
    let undocumented = generator::check_options_table(&root, &declaration)
        .err()
        .context("the README check accepted an option the table lacks")?;
    ensure!(
        undocumented.to_string().contains("greeting is not in the table"),
        "the README check said: {undocumented}"
    );
    document(&root)?;
    generator::check_options_table(&root, &declaration)?;

    let cases = cases::load(&root, &declaration)?;
    for value in [true, false] {
        ensure!(
            cases
                .iter()
                .any(|case| case.shape.get(OPTION) == Some(&Value::Bool(value))),
            "no case has {OPTION} = {value}"
        );
    }
    let samples = declaration.sample_shapes();
    ensure!(
        samples
            .iter()
            .any(|shape| shape.get(OPTION) == Some(&Value::Bool(true)))
            && samples
                .iter()
                .any(|shape| shape.get(OPTION) == Some(&Value::Bool(false))),
        "the snapshot shapes do not vary {OPTION}"
    );

    generator::check_variables_are_defined(&root, &declaration)?;
    generator::check_bad_input_is_refused(sh, &root, &declaration)?;
    for on in [true, false] {
        let values = BTreeMap::from([(OPTION.to_owned(), Value::Bool(on))]);
        let case = Case {
            id: format!("throwaway-{on}"),
            about: String::new(),
            name: format!("throwaway-{on}"),
            containers: false,
            bench: false,
            defines: vec![(OPTION.to_owned(), on.to_string())],
            shape: declaration.complete(&values)?,
        };
        let dest = scratch_dir(&format!("throwaway-{on}"))?;
        let project = generate::generate_ok(sh, &root, &case.name, &case.defines, &dest)?;
        generator::check_rendered(&project, &case, &declaration)?;
        let lib = std::fs::read_to_string(project.join("src/lib.rs"))?;
        ensure!(
            lib.contains("pub mod greeting;") == on,
            "with {OPTION} = {on}, src/lib.rs reads:\n{lib}"
        );
    }
    let with_it = cases.iter().filter(|case| case.shape.contains_key(OPTION)).count();
    println!(
        "a new option ({} cases, {} snapshot shapes) took 4 files: the declaration, its file, one seam line and a README row",
        with_it,
        samples.len()
    );
    Ok(())
}

fn append(path: &Path, text: &str) -> anyhow::Result<()> {
    let mut content = std::fs::read_to_string(path)?;
    content.push_str(text);
    std::fs::write(path, content)?;
    Ok(())
}

/// Adds the option's row after the last row of the README's options table.
fn document(root: &Path) -> anyhow::Result<()> {
    let path = root.join("README.md");
    let readme = std::fs::read_to_string(&path)?;
    let mut lines: Vec<&str> = readme.lines().collect();
    let header = lines
        .iter()
        .position(|line| line.starts_with("| Option |"))
        .context("no options table")?;
    let end = lines[header..]
        .iter()
        .position(|line| !line.starts_with('|'))
        .map_or(lines.len(), |offset| header + offset);
    lines.insert(end, ROW);
    std::fs::write(&path, lines.join("\n") + "\n")?;
    Ok(())
}
