//! One Liquid template from the texts of several shapes: a line every shape has appears once,
//! the others sit in `{% if %}` blocks whose condition picks exactly the shapes that have them.
//! Conditions are found from the shapes, so the merge knows no option by name.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use anyhow::bail;

pub mod json;

use crate::condition::Condition;
use crate::options::{Declaration, Kind, Shape, Value};

/// Merges `texts` (one per shape) into a template that renders back to each of them. A
/// trailing comma is kept apart from its line, so that the last entry of a JSON object, which
/// has none, is still one line.
pub fn merge(declaration: &Declaration, texts: &[(Shape, String)]) -> anyhow::Result<String> {
    let shapes: Vec<&Shape> = texts.iter().map(|(shape, _)| shape).collect();
    let mut lines: Vec<Line> = Vec::new();
    for (index, (_, text)) in texts.iter().enumerate() {
        lines = align(lines, text, index);
    }
    let everyone: BTreeSet<usize> = (0..texts.len()).collect();
    let mut out = String::new();
    let mut at = 0;
    while at < lines.len() {
        let present = &lines[at].present;
        let end = lines[at..]
            .iter()
            .position(|other| other.present != *present)
            .map_or(lines.len(), |offset| at + offset);
        let mut block = String::new();
        for line in &lines[at..end] {
            block.push_str(line.body);
            if line.comma == line.present {
                block.push(',');
            } else if !line.comma.is_empty() {
                for condition in conditions(declaration, &shapes, present, &line.comma)? {
                    write!(block, "{{% if {} %}},{{% endif %}}", condition.to_liquid()?)?;
                }
            }
            block.push_str(line.end);
        }
        if *present == everyone {
            out.push_str(&block);
        } else {
            for condition in conditions(declaration, &shapes, &everyone, present)? {
                write!(out, "{{% if {} %}}{block}{{% endif %}}", condition.to_liquid()?)?;
            }
        }
        at = end;
    }
    Ok(out)
}

/// A line of the merged text: its body, whether it ends with a newline, which shapes have it
/// and which of those end it with a comma.
#[derive(Debug)]
struct Line<'a> {
    body: &'a str,
    end: &'a str,
    present: BTreeSet<usize>,
    comma: BTreeSet<usize>,
}

/// `line` split into its body, a trailing comma and the newline.
fn split(line: &str) -> (&str, bool, &str) {
    let (content, end) = match line.strip_suffix('\n') {
        Some(content) => (content, "\n"),
        None => (line, ""),
    };
    match content.strip_suffix(',') {
        Some(body) => (body, true, end),
        None => (content, false, end),
    }
}

/// Adds the lines of `text` (shape `index`) to `merged`, matching a longest common
/// subsequence of line bodies and inserting the rest where they stand.
fn align<'a>(merged: Vec<Line<'a>>, text: &'a str, index: usize) -> Vec<Line<'a>> {
    let new: Vec<(&str, bool, &str)> = text.split_inclusive('\n').map(split).collect();
    let same = |line: &Line, (body, _, end): &(&str, bool, &str)| line.body == *body && line.end == *end;
    let (rows, columns) = (merged.len(), new.len());
    // lengths[i][j]: the longest common subsequence of merged[i..] and new[j..].
    let mut lengths = vec![vec![0u32; columns + 1]; rows + 1];
    for i in (0..rows).rev() {
        for j in (0..columns).rev() {
            lengths[i][j] = if same(&merged[i], &new[j]) {
                lengths[i + 1][j + 1] + 1
            } else {
                lengths[i + 1][j].max(lengths[i][j + 1])
            };
        }
    }
    let mut out = Vec::with_capacity(rows + columns);
    let mut merged = merged.into_iter();
    let (mut i, mut j) = (0, 0);
    while i < rows || j < columns {
        let both = i < rows && j < columns;
        if both
            && lengths[i][j] == lengths[i + 1][j + 1] + 1
            && lengths[i][j] > lengths[i + 1][j].max(lengths[i][j + 1])
        {
            let mut line = merged.next().expect("a row per line");
            line.present.insert(index);
            if new[j].1 {
                line.comma.insert(index);
            }
            out.push(line);
            i += 1;
            j += 1;
        } else if i < rows && (j == columns || lengths[i + 1][j] >= lengths[i][j + 1]) {
            out.extend(merged.next());
            i += 1;
        } else {
            let (body, comma, end) = new[j];
            out.push(Line {
                body,
                end,
                present: BTreeSet::from([index]),
                comma: if comma {
                    BTreeSet::from([index])
                } else {
                    BTreeSet::new()
                },
            });
            j += 1;
        }
    }
    out
}

/// Disjoint conditions that, among the shapes in `among`, hold for exactly those in
/// `present`: one conjunction when one suffices, else one per group a conjunction can pick.
fn conditions(
    declaration: &Declaration,
    shapes: &[&Shape],
    among: &BTreeSet<usize>,
    present: &BTreeSet<usize>,
) -> anyhow::Result<Vec<Condition>> {
    let mut left: BTreeSet<usize> = present.clone();
    let mut excluded: BTreeSet<usize> = among.difference(present).copied().collect();
    let picks = |literals: &[Condition], index: usize| literals.iter().all(|literal| literal.holds(shapes[index]));
    // The shortest conjunction of literals every present shape satisfies, if one leaves out
    // every other shape: `auth != "none"` rather than one condition per other value.
    if let Some(&first) = present.iter().next() {
        let common: Vec<Condition> = literals(declaration, shapes[first])
            .into_iter()
            .filter(|literal| present.iter().all(|&index| literal.holds(shapes[index])))
            .collect();
        for size in 1..=common.len().min(3) {
            if let Some(chosen) =
                subsets(&common, size).find(|chosen| !excluded.iter().any(|&index| picks(chosen, index)))
            {
                return Ok(vec![conjunction(chosen)]);
            }
        }
    }
    let mut found = Vec::new();
    while let Some(&first) = left.iter().next() {
        // Every literal the first remaining shape satisfies picks at most it among the
        // shapes to exclude; drop literals while that stays true, to widen the group.
        let mut literals = literals(declaration, shapes[first]);
        if excluded.iter().any(|&index| picks(&literals, index)) {
            bail!(
                "two shapes with the same options have different texts: {:?}",
                shapes[first]
            );
        }
        for at in (0..literals.len()).rev() {
            let mut fewer = literals.clone();
            fewer.remove(at);
            if !excluded.iter().any(|&index| picks(&fewer, index)) {
                literals = fewer;
            }
        }
        let group: BTreeSet<usize> = left.iter().copied().filter(|&index| picks(&literals, index)).collect();
        left.retain(|index| !group.contains(index));
        excluded.extend(group);
        found.push(conjunction(literals));
    }
    Ok(found)
}

/// Every choice of `size` of `items`, in order.
fn subsets(items: &[Condition], size: usize) -> impl Iterator<Item = Vec<Condition>> + '_ {
    let mut indices: Vec<usize> = (0..size).collect();
    let mut done = size > items.len();
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        let chosen = indices.iter().map(|&index| items[index].clone()).collect();
        // The next combination in lexicographic order, or none.
        match (0..size).rev().find(|&at| indices[at] < items.len() - size + at) {
            Some(at) => {
                indices[at] += 1;
                for next in at + 1..size {
                    indices[next] = indices[next - 1] + 1;
                }
            }
            None => done = true,
        }
        Some(chosen)
    })
}

/// The literals `shape` satisfies, the most readable first: `name == value`, then bools, then
/// `name != value`.
fn literals(declaration: &Declaration, shape: &Shape) -> Vec<Condition> {
    let mut equal = Vec::new();
    let mut unequal = Vec::new();
    for option in declaration.enumerable() {
        let Some(value) = shape.get(&option.name) else {
            continue;
        };
        match (&option.kind, value) {
            (Kind::Bool, Value::Bool(true)) => equal.push(Condition::On(option.name.clone())),
            (Kind::Bool, _) => equal.push(Condition::Not(Box::new(Condition::On(option.name.clone())))),
            _ => {
                equal.push(Condition::Eq(option.name.clone(), value.clone()));
                for other in option.values().into_iter().filter(|other| other != value) {
                    unequal.push(Condition::Ne(option.name.clone(), other));
                }
            }
        }
    }
    equal.extend(unequal);
    equal
}

fn conjunction(literals: Vec<Condition>) -> Condition {
    literals
        .into_iter()
        .reduce(|left, right| Condition::And(Box::new(left), Box::new(right)))
        .unwrap_or(Condition::Ne(String::new(), Value::Bool(false)))
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) use crate::options::tests::DECLARATION;

    /// Renders the conditions `merge` writes: conjunctions of comparisons and bools.
    pub(crate) fn render(template: &str, shape: &Shape) -> String {
        let holds = |condition: &str| {
            condition.split(" and ").all(|literal| {
                let parts: Vec<&str> = literal.split(' ').collect();
                match parts.as_slice() {
                    [name] => shape.get(*name) == Some(&Value::Bool(true)),
                    [name, operator, value] => {
                        let actual = shape.get(*name).map(ToString::to_string).unwrap_or_default();
                        (actual == value.trim_matches('"')) == (*operator == "==")
                    }
                    _ => panic!("unexpected literal {literal}"),
                }
            })
        };
        // Nested ifs: a line's comma sits in its own condition inside the line's block.
        let mut out = String::new();
        let mut active = vec![true];
        let mut rest = template;
        while let Some(start) = rest.find("{%") {
            if active.iter().all(|on| *on) {
                out.push_str(&rest[..start]);
            }
            let (tag, after) = rest[start + 2..].split_once("%}").expect("tag end");
            if let Some(condition) = tag.trim().strip_prefix("if ") {
                active.push(holds(condition));
            } else {
                assert_eq!(tag.trim(), "endif");
                active.pop();
            }
            rest = after;
        }
        out.push_str(rest);
        out
    }

    #[test]
    fn the_merged_template_renders_back_to_every_text() {
        let declaration = Declaration::parse(DECLARATION).expect("valid");
        let shapes = declaration.sample_shapes();
        let texts: Vec<(Shape, String)> = shapes
            .iter()
            .map(|shape| {
                let mut text = String::from("{\n  \"paths\": {\n    \"/health\": {}");
                if shape.get("auth") == Some(&Value::Text("issuer".into())) {
                    text.push_str(",\n    \"/auth/login\": {}");
                }
                if shape.get("example") == Some(&Value::Bool(true)) {
                    text.push_str(",\n    \"/projects\": {}");
                }
                text.push_str("\n  }\n}\n");
                (shape.clone(), text)
            })
            .collect();

        let merged = merge(&declaration, &texts).expect("mergeable");

        for (shape, text) in &texts {
            assert_eq!(&render(&merged, shape), text, "{shape:?}\n{merged}");
        }
        assert_eq!(merged.matches("\"/health\"").count(), 1, "{merged}");
        assert_eq!(merged.matches("\"/projects\"").count(), 1, "{merged}");
        assert!(merged.contains(r#"{% if auth == "issuer" %}"#), "{merged}");
        assert!(merged.contains("{% if example %}"), "{merged}");
    }

    #[test]
    fn a_text_no_conjunction_picks_is_split_into_disjoint_groups() {
        let declaration = Declaration::parse(DECLARATION).expect("valid");
        let shapes = declaration.sample_shapes();
        // Present for issuer with the example and for verifier without it.
        let texts: Vec<(Shape, String)> = shapes
            .iter()
            .map(|shape| {
                let issuer = shape.get("auth") == Some(&Value::Text("issuer".into()));
                let example = shape.get("example") == Some(&Value::Bool(true));
                let verifier = shape.get("auth") == Some(&Value::Text("verifier".into()));
                let odd = if (issuer && example) || (verifier && !example) {
                    "odd\n"
                } else {
                    ""
                };
                (shape.clone(), format!("a\n{odd}b\n"))
            })
            .collect();

        let merged = merge(&declaration, &texts).expect("mergeable");

        for (shape, text) in &texts {
            assert_eq!(&render(&merged, shape), text, "{shape:?}\n{merged}");
        }
    }
}
