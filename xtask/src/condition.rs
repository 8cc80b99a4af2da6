//! Conditions over option values, in the small part of rhai that `cargo-generate.toml` uses
//! (`auth != "none"`, `example == false`, `!jobs`, `&&`, `||`, parentheses), evaluated against
//! a shape and written back as rhai or as a Liquid `if`.

use std::fmt;

use anyhow::{Context, bail, ensure};

use crate::options::{Shape, Value};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// `name == value`
    Eq(String, Value),
    /// `name != value`
    Ne(String, Value),
    /// A bool option on its own.
    On(String),
    Not(Box<Condition>),
    And(Box<Condition>, Box<Condition>),
    Or(Box<Condition>, Box<Condition>),
}

impl Condition {
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let tokens = tokenize(text)?;
        let mut parser = Parser { tokens, at: 0 };
        let condition = parser.or()?;
        ensure!(
            parser.at == parser.tokens.len(),
            "unexpected {:?}",
            parser.tokens[parser.at]
        );
        Ok(condition)
    }

    /// Whether the condition holds for `shape`; an option the shape lacks is off.
    pub fn holds(&self, shape: &Shape) -> bool {
        match self {
            Self::Eq(name, value) => shape.get(name) == Some(value),
            Self::Ne(name, value) => shape.get(name) != Some(value),
            Self::On(name) => shape.get(name) == Some(&Value::Bool(true)),
            Self::Not(inner) => !inner.holds(shape),
            Self::And(left, right) => left.holds(shape) && right.holds(shape),
            Self::Or(left, right) => left.holds(shape) || right.holds(shape),
        }
    }

    /// The options named, each with the value compared against (none for a bare bool).
    pub fn literals(&self) -> Vec<(String, Option<Value>)> {
        match self {
            Self::Eq(name, value) | Self::Ne(name, value) => vec![(name.clone(), Some(value.clone()))],
            Self::On(name) => vec![(name.clone(), None)],
            Self::Not(inner) => inner.literals(),
            Self::And(left, right) | Self::Or(left, right) => {
                let mut literals = left.literals();
                literals.extend(right.literals());
                literals
            }
        }
    }

    /// The condition as a Liquid `if` expression. Liquid has neither `!` nor parentheses, so
    /// only a conjunction of comparisons can be written.
    pub fn to_liquid(&self) -> anyhow::Result<String> {
        Ok(match self {
            Self::Eq(name, value) => format!("{name} == {}", literal(value)),
            Self::Ne(name, value) => format!("{name} != {}", literal(value)),
            Self::On(name) => name.clone(),
            Self::Not(inner) => match inner.as_ref() {
                Self::On(name) => format!("{name} == false"),
                Self::Eq(name, value) => format!("{name} != {}", literal(value)),
                Self::Ne(name, value) => format!("{name} == {}", literal(value)),
                other => bail!("Liquid cannot negate {other}"),
            },
            Self::And(left, right) => format!("{} and {}", left.to_liquid()?, right.to_liquid()?),
            Self::Or(..) => bail!("Liquid cannot group {self}"),
        })
    }
}

fn literal(value: &Value) -> String {
    match value {
        Value::Text(text) => format!("\"{text}\""),
        Value::Bool(value) => value.to_string(),
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Eq(name, value) => write!(f, "{name} == {}", literal(value)),
            Self::Ne(name, value) => write!(f, "{name} != {}", literal(value)),
            Self::On(name) => f.write_str(name),
            Self::Not(inner) => write!(f, "!({inner})"),
            Self::And(left, right) => write!(f, "({left} && {right})"),
            Self::Or(left, right) => write!(f, "({left} || {right})"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Name(String),
    Text(String),
    Bool(bool),
    Symbol(&'static str),
}

fn tokenize(text: &str) -> anyhow::Result<Vec<Token>> {
    let mut tokens = Vec::new();
    let mut rest = text.trim_start();
    while !rest.is_empty() {
        if let Some(symbol) = ["==", "!=", "&&", "||", "!", "(", ")"]
            .into_iter()
            .find(|symbol| rest.starts_with(symbol))
        {
            tokens.push(Token::Symbol(symbol));
            rest = &rest[symbol.len()..];
        } else if let Some(quoted) = rest.strip_prefix('"') {
            let end = quoted.find('"').context("unterminated string")?;
            tokens.push(Token::Text(quoted[..end].to_owned()));
            rest = &quoted[end + 1..];
        } else {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
                .unwrap_or(rest.len());
            ensure!(end > 0, "unexpected {:?}", rest.chars().next().unwrap_or_default());
            let word = &rest[..end];
            tokens.push(match word {
                "true" => Token::Bool(true),
                "false" => Token::Bool(false),
                _ => Token::Name(word.to_owned()),
            });
            rest = &rest[end..];
        }
        rest = rest.trim_start();
    }
    Ok(tokens)
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn eat(&mut self, symbol: &'static str) -> bool {
        let found = self.peek() == Some(&Token::Symbol(symbol));
        if found {
            self.at += 1;
        }
        found
    }

    fn or(&mut self) -> anyhow::Result<Condition> {
        let mut left = self.and()?;
        while self.eat("||") {
            left = Condition::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> anyhow::Result<Condition> {
        let mut left = self.unary()?;
        while self.eat("&&") {
            left = Condition::And(Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }

    fn unary(&mut self) -> anyhow::Result<Condition> {
        if self.eat("!") {
            return Ok(Condition::Not(Box::new(self.unary()?)));
        }
        if self.eat("(") {
            let inner = self.or()?;
            ensure!(self.eat(")"), "missing )");
            return Ok(inner);
        }
        let Some(Token::Name(name)) = self.peek().cloned() else {
            bail!("expected an option name, found {:?}", self.peek());
        };
        self.at += 1;
        let equal = if self.eat("==") {
            true
        } else if self.eat("!=") {
            false
        } else {
            return Ok(Condition::On(name));
        };
        let value = match self.peek().cloned() {
            Some(Token::Text(text)) => Value::Text(text),
            Some(Token::Bool(value)) => Value::Bool(value),
            other => bail!("expected a value after {name}, found {other:?}"),
        };
        self.at += 1;
        Ok(if equal {
            Condition::Eq(name, value)
        } else {
            Condition::Ne(name, value)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(auth: &str, example: bool) -> Shape {
        Shape::from([
            ("auth".to_owned(), Value::Text(auth.to_owned())),
            ("example".to_owned(), Value::Bool(example)),
        ])
    }

    #[test]
    fn conditions_of_the_declaration_hold_where_they_should() {
        let condition = Condition::parse(r#"auth == "none" || example == false"#).expect("valid");

        assert!(condition.holds(&shape("none", false)));
        assert!(condition.holds(&shape("issuer", false)));
        assert!(!condition.holds(&shape("issuer", true)));
        let negated = Condition::parse(r#"!(auth != "none") && !example"#).expect("valid");
        assert!(negated.holds(&shape("none", false)));
        assert!(!negated.holds(&shape("none", true)));
    }

    #[test]
    fn a_conjunction_becomes_a_liquid_condition() {
        let condition = Condition::parse(r#"auth != "none" && !example"#).expect("valid");

        assert_eq!(
            condition.to_liquid().expect("liquid"),
            r#"auth != "none" and example == false"#
        );
        assert!(Condition::parse("a || b").expect("valid").to_liquid().is_err());
    }

    #[test]
    fn malformed_conditions_are_refused() {
        for text in ["auth ==", "(auth", "auth == \"x", "&& b", "a b"] {
            assert!(Condition::parse(text).is_err(), "{text}");
        }
    }
}
