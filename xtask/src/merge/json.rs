//! One Liquid template from JSON documents of several shapes, merged by structure: an object
//! key that only some shapes have sits in an `{% if %}` of its own, and a value that differs
//! between shapes is written once per group of shapes that agree. Every rendering is valid
//! JSON equal to its shape's document; formatting is not kept.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use serde_json::Value;

use super::conditions;
use crate::options::{Declaration, Shape};

/// Merges `documents` (one per shape) into a template that renders to a document equal to each.
pub fn merge(declaration: &Declaration, documents: &[(Shape, Value)]) -> anyhow::Result<String> {
    let merger = Merger {
        declaration,
        shapes: documents.iter().map(|(shape, _)| shape).collect(),
    };
    let values: Vec<(usize, &Value)> = documents.iter().map(|(_, value)| value).enumerate().collect();
    let mut out = String::new();
    merger.value(&mut out, &values, 0)?;
    out.push('\n');
    Ok(out)
}

struct Merger<'a> {
    declaration: &'a Declaration,
    shapes: Vec<&'a Shape>,
}

impl Merger<'_> {
    /// Writes the node that the shapes in `values` have, each with its value there.
    fn value(&self, out: &mut String, values: &[(usize, &Value)], depth: usize) -> anyhow::Result<()> {
        let first = values[0].1;
        if values.iter().all(|(_, value)| *value == first) {
            return write_value(out, first, depth);
        }
        if values.iter().all(|(_, value)| value.is_object()) {
            return self.object(out, values, depth);
        }
        // Values that no key can tell apart: one alternative per group of equal values.
        let among: BTreeSet<usize> = values.iter().map(|(index, _)| *index).collect();
        let mut groups: Vec<(&Value, BTreeSet<usize>)> = Vec::new();
        for (index, value) in values {
            match groups.iter_mut().find(|(known, _)| known == value) {
                Some((_, members)) => {
                    members.insert(*index);
                }
                None => groups.push((value, BTreeSet::from([*index]))),
            }
        }
        for (value, members) in groups {
            for condition in conditions(self.declaration, &self.shapes, &among, &members)? {
                write!(out, "{{% if {} %}}", condition.to_liquid()?)?;
                write_value(out, value, depth)?;
                out.push_str("{% endif %}");
            }
        }
        Ok(())
    }

    /// Writes an object whose keys differ between shapes. Keys come in sorted order (as
    /// serde_json writes them); a key some shapes lack, and the comma before a key that is not
    /// the first some shape has, sit in conditions.
    fn object(&self, out: &mut String, values: &[(usize, &Value)], depth: usize) -> anyhow::Result<()> {
        let among: BTreeSet<usize> = values.iter().map(|(index, _)| *index).collect();
        let mut keys: BTreeSet<&str> = BTreeSet::new();
        for (_, value) in values {
            keys.extend(value.as_object().into_iter().flatten().map(|(key, _)| key.as_str()));
        }
        let indent = "  ".repeat(depth + 1);
        // The shapes that have written an entry of this object so far.
        let mut started: BTreeSet<usize> = BTreeSet::new();
        out.push('{');
        for (position, key) in keys.into_iter().enumerate() {
            let entries: Vec<(usize, &Value)> = values
                .iter()
                .filter_map(|(index, value)| value.get(key).map(|entry| (*index, entry)))
                .collect();
            let present: BTreeSet<usize> = entries.iter().map(|(index, _)| *index).collect();
            let mut entry = String::new();
            let comma: BTreeSet<usize> = present.intersection(&started).copied().collect();
            if comma == present {
                entry.push(',');
            } else if !comma.is_empty() {
                for condition in conditions(self.declaration, &self.shapes, &present, &comma)? {
                    write!(entry, "{{% if {} %}},{{% endif %}}", condition.to_liquid()?)?;
                }
            }
            write!(entry, "\n{indent}{}: ", Value::from(key))?;
            self.value(&mut entry, &entries, depth + 1)?;
            if present == among {
                out.push_str(&entry);
            } else {
                if position == 0 {
                    // `{{` would open a Liquid output: the brace gets its line break here,
                    // and a shape without this key an empty line.
                    out.push('\n');
                    entry.remove(0);
                }
                for condition in conditions(self.declaration, &self.shapes, &among, &present)? {
                    write!(out, "{{% if {} %}}{entry}{{% endif %}}", condition.to_liquid()?)?;
                }
            }
            started.extend(present);
        }
        write!(out, "\n{}}}", "  ".repeat(depth))?;
        Ok(())
    }
}

/// `value` as pretty JSON, indented to `depth`.
fn write_value(out: &mut String, value: &Value, depth: usize) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    let indent = "  ".repeat(depth);
    for (index, line) in text.lines().enumerate() {
        if index > 0 {
            out.push('\n');
            out.push_str(&indent);
        }
        out.push_str(line);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::merge::tests::{DECLARATION, render};
    use crate::options::Value as OptionValue;

    #[test]
    fn every_rendering_is_its_shapes_document() {
        let declaration = Declaration::parse(DECLARATION).expect("valid");
        let documents: Vec<(Shape, Value)> = declaration
            .sample_shapes()
            .into_iter()
            .map(|shape| {
                let issuer = shape.get("auth") == Some(&OptionValue::Text("issuer".into()));
                let example = shape.get("example") == Some(&OptionValue::Bool(true));
                let mut paths = json!({ "/health": { "get": {} } });
                if !issuer {
                    // A key that sorts first and not every shape has.
                    paths["/a"] = json!({});
                }
                let mut required = vec!["id"];
                if issuer {
                    paths["/auth/login"] = json!({ "post": { "x": [1, 2] } });
                    required.push("email");
                }
                if example {
                    paths["/projects"] = json!({ "get": {} });
                }
                let document = json!({ "info": { "title": "{{project-name}}" }, "paths": paths,
                    "schemas": { "User": { "required": required } } });
                (shape, document)
            })
            .collect();

        let merged = merge(&declaration, &documents).expect("mergeable");

        for (shape, document) in &documents {
            let rendered = render(&merged, shape);
            let parsed: Value = serde_json::from_str(&rendered).unwrap_or_else(|err| panic!("{err}: {rendered}"));
            assert_eq!(&parsed, document, "{shape:?}\n{merged}");
        }
        assert_eq!(merged.matches("\"/health\"").count(), 1, "{merged}");
        assert!(merged.contains(r#"{% if auth == "issuer" %}"#), "{merged}");
        assert!(
            !merged.contains("{{%"),
            "a brace before a tag reads as a Liquid output: {merged}"
        );
    }
}
