//! Label and field selectors: the `?labelSelector=` / `?fieldSelector=` string syntax and the
//! structured `metav1.LabelSelector`, with the same acceptance rules and matching semantics as
//! Kubernetes' apimachinery.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1 as metav1;

/// Why a selector could not be parsed or built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// The string did not follow the selector grammar.
    #[error("found '{found}', expected: {expected}")]
    Syntax {
        /// The token that was found (`end of string` at the end).
        found: String,
        /// What the grammar allowed at that point.
        expected: String,
    },
    /// A label key is not a qualified name.
    #[error("invalid label key \"{key}\": {reason}")]
    InvalidKey {
        /// The offending key.
        key: String,
        /// Which rule it breaks.
        reason: String,
    },
    /// A label value is not a valid label value.
    #[error("invalid label value \"{value}\" for key \"{key}\": {reason}")]
    InvalidValue {
        /// The key the value belongs to.
        key: String,
        /// The offending value.
        value: String,
        /// Which rule it breaks.
        reason: String,
    },
    /// An operator was given the wrong number or kind of values.
    #[error("invalid requirement for key \"{key}\": {reason}")]
    InvalidRequirement {
        /// The key of the requirement.
        key: String,
        /// What is wrong with its values.
        reason: String,
    },
    /// A `matchExpressions` operator that Kubernetes does not know.
    #[error("\"{0}\" is not a valid label selector operator")]
    UnknownOperator(String),
    /// A field selector term without an operator.
    #[error("invalid selector: '{selector}'; can't understand '{term}'")]
    FieldTerm {
        /// The whole selector.
        selector: String,
        /// The term that has no `=`, `==` or `!=`.
        term: String,
    },
    /// A field selector value with a bad escape or an unescaped special character.
    #[error("{0}")]
    FieldValue(String),
}

impl SelectorError {
    /// A stable, low-cardinality name for metrics and logs.
    pub fn category(&self) -> &'static str {
        match self {
            SelectorError::Syntax { .. } => "syntax",
            SelectorError::InvalidKey { .. } => "invalid_key",
            SelectorError::InvalidValue { .. } => "invalid_value",
            SelectorError::InvalidRequirement { .. } => "invalid_requirement",
            SelectorError::UnknownOperator(_) => "unknown_operator",
            SelectorError::FieldTerm { .. } => "field_term",
            SelectorError::FieldValue(_) => "field_value",
        }
    }
}

/// A label selector operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Operator {
    /// `key=value`
    Equals,
    /// `key==value`
    DoubleEquals,
    /// `key!=value`
    NotEquals,
    /// `key in (a,b)`
    In,
    /// `key notin (a,b)`
    NotIn,
    /// `key`
    Exists,
    /// `!key`
    DoesNotExist,
    /// `key>n` (integer comparison)
    GreaterThan,
    /// `key<n` (integer comparison)
    LessThan,
}

/// One ANDed clause of a label selector.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Requirement {
    key: String,
    operator: Operator,
    values: BTreeSet<String>,
}

impl Requirement {
    /// Builds a requirement, validating the key, the values and their count for the operator.
    pub fn new(
        key: &str,
        operator: Operator,
        values: impl IntoIterator<Item = String>,
    ) -> Result<Self, SelectorError> {
        validate_label_key(key)?;
        let values: BTreeSet<String> = values.into_iter().collect();
        let bad = |reason: &str| SelectorError::InvalidRequirement {
            key: key.to_string(),
            reason: reason.to_string(),
        };
        match operator {
            Operator::In | Operator::NotIn => {
                if values.is_empty() {
                    return Err(bad(
                        "for 'in', 'notin' operators, values set can't be empty",
                    ));
                }
            }
            Operator::Equals | Operator::DoubleEquals | Operator::NotEquals => {
                if values.len() != 1 {
                    return Err(bad("exact-match compatibility requires one single value"));
                }
            }
            Operator::Exists | Operator::DoesNotExist => {
                if !values.is_empty() {
                    return Err(bad(
                        "values set must be empty for exists and does not exist",
                    ));
                }
            }
            Operator::GreaterThan | Operator::LessThan => {
                if values.len() != 1 {
                    return Err(bad(
                        "for 'Gt', 'Lt' operators, exactly one value is required",
                    ));
                }
                if values.iter().any(|v| v.parse::<i64>().is_err()) {
                    return Err(bad(
                        "for 'Gt', 'Lt' operators, the value must be an integer",
                    ));
                }
            }
        }
        if !matches!(operator, Operator::GreaterThan | Operator::LessThan) {
            for value in &values {
                validate_label_value(key, value)?;
            }
        }
        Ok(Requirement {
            key: key.to_string(),
            operator,
            values,
        })
    }

    /// The label key this clause tests.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The operator.
    pub fn operator(&self) -> Operator {
        self.operator
    }

    /// The values, sorted.
    pub fn values(&self) -> &BTreeSet<String> {
        &self.values
    }

    /// Whether `labels` satisfy this clause.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        match self.operator {
            Operator::Equals | Operator::DoubleEquals | Operator::In => {
                value.is_some_and(|v| self.values.contains(v))
            }
            Operator::NotEquals | Operator::NotIn => value.is_none_or(|v| !self.values.contains(v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                let Some(have) = value.and_then(|v| v.parse::<i64>().ok()) else {
                    return false;
                };
                let Some(want) = self
                    .values
                    .iter()
                    .next()
                    .and_then(|v| v.parse::<i64>().ok())
                else {
                    return false;
                };
                if self.operator == Operator::GreaterThan {
                    have > want
                } else {
                    have < want
                }
            }
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let first = self.values.iter().next().map(String::as_str).unwrap_or("");
        let joined = self.values.iter().cloned().collect::<Vec<_>>().join(",");
        match self.operator {
            Operator::Equals => write!(f, "{}={}", self.key, first),
            Operator::DoubleEquals => write!(f, "{}=={}", self.key, first),
            Operator::NotEquals => write!(f, "{}!={}", self.key, first),
            Operator::In => write!(f, "{} in ({})", self.key, joined),
            Operator::NotIn => write!(f, "{} notin ({})", self.key, joined),
            Operator::Exists => write!(f, "{}", self.key),
            Operator::DoesNotExist => write!(f, "!{}", self.key),
            Operator::GreaterThan => write!(f, "{}>{}", self.key, first),
            Operator::LessThan => write!(f, "{}<{}", self.key, first),
        }
    }
}

/// A label selector: requirements that must all hold, or the selector that matches nothing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
    /// Set only by [`LabelSelector::nothing`]: a null `metav1.LabelSelector` selects no objects.
    matches_nothing: bool,
}

impl LabelSelector {
    /// The selector that matches every label set.
    pub fn everything() -> Self {
        LabelSelector::default()
    }

    /// The selector that matches no label set (what a null selector means in most contexts).
    pub fn nothing() -> Self {
        LabelSelector {
            requirements: Vec::new(),
            matches_nothing: true,
        }
    }

    /// Builds a selector from requirements; they are kept sorted by key like apimachinery does.
    pub fn from_requirements(mut requirements: Vec<Requirement>) -> Self {
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        LabelSelector {
            requirements,
            matches_nothing: false,
        }
    }

    /// Parses the string syntax (`a=b,c!=d,e in (f,g),!h`). Empty input selects everything.
    pub fn parse(input: &str) -> Result<Self, SelectorError> {
        let tokens = lex(input)?;
        let mut parser = Parser { tokens, pos: 0 };
        let mut requirements = Vec::new();
        loop {
            match parser.peek() {
                Token::End => break,
                Token::Ident(_) | Token::Bang | Token::In | Token::NotIn => {
                    requirements.push(parser.requirement()?);
                    match parser.next() {
                        Token::End => break,
                        Token::Comma => {
                            // A trailing comma leaves an empty requirement, which apimachinery
                            // rejects as a missing identifier.
                            if !matches!(
                                parser.peek(),
                                Token::Ident(_) | Token::Bang | Token::In | Token::NotIn
                            ) {
                                return Err(syntax(&parser.peek(), "identifier after ','"));
                            }
                        }
                        other => return Err(syntax(&other, "',' or 'end of string'")),
                    }
                }
                other => return Err(syntax(&other, "!, identifier, or 'end of string'")),
            }
        }
        Ok(LabelSelector::from_requirements(requirements))
    }

    /// Converts a structured `metav1.LabelSelector`. An empty one selects everything; callers
    /// decide what an absent (`None`) selector means in their context.
    pub fn from_k8s(selector: &metav1::LabelSelector) -> Result<Self, SelectorError> {
        let mut requirements = Vec::new();
        for (key, value) in selector.match_labels.iter().flatten() {
            requirements.push(Requirement::new(key, Operator::Equals, [value.clone()])?);
        }
        for expr in selector.match_expressions.iter().flatten() {
            let operator = match expr.operator.as_str() {
                "In" => Operator::In,
                "NotIn" => Operator::NotIn,
                "Exists" => Operator::Exists,
                "DoesNotExist" => Operator::DoesNotExist,
                other => return Err(SelectorError::UnknownOperator(other.to_string())),
            };
            requirements.push(Requirement::new(
                &expr.key,
                operator,
                expr.values.iter().flatten().cloned(),
            )?);
        }
        Ok(LabelSelector::from_requirements(requirements))
    }

    /// Whether `labels` satisfy every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        !self.matches_nothing && self.requirements.iter().all(|r| r.matches(labels))
    }

    /// Whether this selector matches everything.
    pub fn is_everything(&self) -> bool {
        !self.matches_nothing && self.requirements.is_empty()
    }

    /// The requirements, sorted by key.
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }
}

impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, requirement) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{requirement}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Ident(String),
    In,
    NotIn,
    Equals,
    DoubleEquals,
    NotEquals,
    Bang,
    Greater,
    Less,
    OpenParen,
    CloseParen,
    Comma,
    End,
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            Token::Ident(s) => s.as_str(),
            Token::In => "in",
            Token::NotIn => "notin",
            Token::Equals => "=",
            Token::DoubleEquals => "==",
            Token::NotEquals => "!=",
            Token::Bang => "!",
            Token::Greater => ">",
            Token::Less => "<",
            Token::OpenParen => "(",
            Token::CloseParen => ")",
            Token::Comma => ",",
            Token::End => "end of string",
        };
        f.write_str(text)
    }
}

fn syntax(found: &Token, expected: &str) -> SelectorError {
    SelectorError::Syntax {
        found: found.to_string(),
        expected: expected.to_string(),
    }
}

fn is_special(c: char) -> bool {
    matches!(c, '=' | '!' | '(' | ')' | ',' | '>' | '<')
}

fn lex(input: &str) -> Result<Vec<Token>, SelectorError> {
    let chars: Vec<char> = input.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if is_special(c) {
            let next = chars.get(i + 1).copied();
            let (token, len) = match (c, next) {
                ('!', Some('=')) => (Token::NotEquals, 2),
                ('=', Some('=')) => (Token::DoubleEquals, 2),
                ('=', _) => (Token::Equals, 1),
                ('!', _) => (Token::Bang, 1),
                ('(', _) => (Token::OpenParen, 1),
                (')', _) => (Token::CloseParen, 1),
                (',', _) => (Token::Comma, 1),
                ('>', _) => (Token::Greater, 1),
                _ => (Token::Less, 1),
            };
            tokens.push(token);
            i += len;
            continue;
        }
        let start = i;
        while chars
            .get(i)
            .is_some_and(|c| !c.is_whitespace() && !is_special(*c))
        {
            i += 1;
        }
        let word: String = chars.get(start..i).unwrap_or_default().iter().collect();
        tokens.push(match word.as_str() {
            "in" => Token::In,
            "notin" => Token::NotIn,
            _ => Token::Ident(word),
        });
    }
    tokens.push(Token::End);
    Ok(tokens)
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Token {
        self.tokens.get(self.pos).cloned().unwrap_or(Token::End)
    }

    fn next(&mut self) -> Token {
        let token = self.peek();
        self.pos += 1;
        token
    }

    fn requirement(&mut self) -> Result<Requirement, SelectorError> {
        let negated = if self.peek() == Token::Bang {
            self.pos += 1;
            true
        } else {
            false
        };
        let key = match self.next() {
            Token::Ident(key) => key,
            Token::In => "in".to_string(),
            Token::NotIn => "notin".to_string(),
            other => return Err(syntax(&other, "identifier")),
        };
        if negated {
            return Requirement::new(&key, Operator::DoesNotExist, []);
        }
        let operator = match self.peek() {
            Token::End | Token::Comma => return Requirement::new(&key, Operator::Exists, []),
            Token::Equals => Operator::Equals,
            Token::DoubleEquals => Operator::DoubleEquals,
            Token::NotEquals => Operator::NotEquals,
            Token::In => Operator::In,
            Token::NotIn => Operator::NotIn,
            Token::Greater => Operator::GreaterThan,
            Token::Less => Operator::LessThan,
            other => {
                return Err(syntax(&other, "'=', '!=', '==', 'in', 'notin', '>' or '<'"));
            }
        };
        self.pos += 1;
        let values = match operator {
            Operator::In | Operator::NotIn => self.value_set()?,
            _ => vec![self.exact_value()?],
        };
        Requirement::new(&key, operator, values)
    }

    fn exact_value(&mut self) -> Result<String, SelectorError> {
        match self.peek() {
            // `a=` selects the empty value.
            Token::End | Token::Comma => Ok(String::new()),
            Token::Ident(value) => {
                self.pos += 1;
                Ok(value)
            }
            // Keywords are plain values once an operator has been seen.
            Token::In => {
                self.pos += 1;
                Ok("in".to_string())
            }
            Token::NotIn => {
                self.pos += 1;
                Ok("notin".to_string())
            }
            other => Err(syntax(&other, "identifier")),
        }
    }

    fn value_set(&mut self) -> Result<Vec<String>, SelectorError> {
        match self.next() {
            Token::OpenParen => {}
            other => return Err(syntax(&other, "'('")),
        }
        let mut values = Vec::new();
        let mut expect_value = true;
        loop {
            match self.next() {
                Token::CloseParen => {
                    // `()` and `(a,)` carry an empty value, as in apimachinery.
                    if expect_value {
                        values.push(String::new());
                    }
                    return Ok(values);
                }
                Token::Comma => {
                    if expect_value {
                        values.push(String::new());
                    }
                    expect_value = true;
                }
                Token::Ident(value) if expect_value => {
                    values.push(value);
                    expect_value = false;
                }
                Token::In if expect_value => {
                    values.push("in".to_string());
                    expect_value = false;
                }
                Token::NotIn if expect_value => {
                    values.push("notin".to_string());
                    expect_value = false;
                }
                other => {
                    let expected = if expect_value {
                        "',', ')' or identifier"
                    } else {
                        "',' or ')'"
                    };
                    return Err(syntax(&other, expected));
                }
            }
        }
    }
}

const DNS1123_SUBDOMAIN_MAX: usize = 253;
const QUALIFIED_NAME_MAX: usize = 63;
const LABEL_VALUE_MAX: usize = 63;

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`, the shape of label names and values.
fn is_name_shaped(s: &str) -> bool {
    let bytes = s.as_bytes();
    let (Some(first), Some(last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    first.is_ascii_alphanumeric()
        && last.is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= DNS1123_SUBDOMAIN_MAX
        && s.split('.').all(|label| {
            let bytes = label.as_bytes();
            match (bytes.first(), bytes.last()) {
                (Some(first), Some(last)) => {
                    (first.is_ascii_lowercase() || first.is_ascii_digit())
                        && (last.is_ascii_lowercase() || last.is_ascii_digit())
                        && bytes
                            .iter()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
                }
                _ => false,
            }
        })
}

/// Validates a label key as a Kubernetes qualified name (`[prefix/]name`).
pub fn validate_label_key(key: &str) -> Result<(), SelectorError> {
    let invalid = |reason: &str| SelectorError::InvalidKey {
        key: key.to_string(),
        reason: reason.to_string(),
    };
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if name.contains('/') {
        return Err(invalid(
            "a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character, with an optional DNS subdomain prefix and '/'",
        ));
    }
    if let Some(prefix) = prefix {
        if prefix.is_empty() {
            return Err(invalid("prefix part must be non-empty"));
        }
        if !is_dns1123_subdomain(prefix) {
            return Err(invalid(
                "prefix part must be a lowercase RFC 1123 subdomain of at most 253 characters",
            ));
        }
    }
    if name.is_empty() {
        return Err(invalid("name part must be non-empty"));
    }
    if name.len() > QUALIFIED_NAME_MAX {
        return Err(invalid("name part must be no more than 63 characters"));
    }
    if !is_name_shaped(name) {
        return Err(invalid(
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
        ));
    }
    Ok(())
}

/// Validates a label value (empty, or at most 63 name-shaped characters).
pub fn validate_label_value(key: &str, value: &str) -> Result<(), SelectorError> {
    let invalid = |reason: &str| SelectorError::InvalidValue {
        key: key.to_string(),
        value: value.to_string(),
        reason: reason.to_string(),
    };
    if value.len() > LABEL_VALUE_MAX {
        return Err(invalid("must be no more than 63 characters"));
    }
    if !value.is_empty() && !is_name_shaped(value) {
        return Err(invalid(
            "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
        ));
    }
    Ok(())
}

/// A field selector clause: `field=value` or `field!=value`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FieldRequirement {
    /// The field path, e.g. `spec.nodeName`.
    pub field: String,
    /// The unescaped value to compare with.
    pub value: String,
    /// True for `!=`.
    pub negated: bool,
}

impl FieldRequirement {
    /// Whether the field's value (absent counts as empty) satisfies this clause.
    pub fn matches(&self, actual: Option<&str>) -> bool {
        (actual.unwrap_or("") == self.value) != self.negated
    }
}

impl fmt::Display for FieldRequirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = if self.negated { "!=" } else { "=" };
        write!(f, "{}{}{}", self.field, op, escape_field_value(&self.value))
    }
}

/// A field selector: clauses that must all hold. Empty selects everything.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldSelector {
    requirements: Vec<FieldRequirement>,
}

impl FieldSelector {
    /// The selector that matches everything.
    pub fn everything() -> Self {
        FieldSelector::default()
    }

    /// Parses `f=v,g!=w` with apimachinery's escaping (`\,` `\=` `\\` inside values).
    pub fn parse(input: &str) -> Result<Self, SelectorError> {
        let mut terms = split_unescaped_commas(input);
        terms.sort();
        let mut requirements = Vec::new();
        for term in terms {
            if term.is_empty() {
                continue;
            }
            let Some((field, op, raw)) = split_field_term(&term) else {
                return Err(SelectorError::FieldTerm {
                    selector: input.to_string(),
                    term,
                });
            };
            requirements.push(FieldRequirement {
                field: field.to_string(),
                value: unescape_field_value(raw)?,
                negated: op == "!=",
            });
        }
        Ok(FieldSelector { requirements })
    }

    /// Whether every clause holds, reading field values through `get` (absent = empty string).
    pub fn matches(&self, get: impl Fn(&str) -> Option<String>) -> bool {
        self.requirements
            .iter()
            .all(|r| r.matches(get(&r.field).as_deref()))
    }

    /// The distinct field paths this selector reads, sorted, so a server can reject
    /// unsupported ones (`field label not supported: <field>`).
    pub fn fields(&self) -> Vec<&str> {
        let set: BTreeSet<&str> = self.requirements.iter().map(|r| r.field.as_str()).collect();
        set.into_iter().collect()
    }

    /// The value `field` must equal, when the selector pins it with `=`/`==`.
    pub fn exact_match(&self, field: &str) -> Option<&str> {
        self.requirements
            .iter()
            .find(|r| r.field == field && !r.negated)
            .map(|r| r.value.as_str())
    }

    /// The clauses, in canonical (sorted term) order.
    pub fn requirements(&self) -> &[FieldRequirement] {
        &self.requirements
    }

    /// Whether this selector matches everything.
    pub fn is_everything(&self) -> bool {
        self.requirements.is_empty()
    }
}

impl fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, requirement) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{requirement}")?;
        }
        Ok(())
    }
}

fn split_unescaped_commas(input: &str) -> Vec<String> {
    if input.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    let mut current = String::new();
    let mut escaped = false;
    for c in input.chars() {
        if escaped {
            escaped = false;
            current.push(c);
        } else if c == '\\' {
            escaped = true;
            current.push(c);
        } else if c == ',' {
            terms.push(std::mem::take(&mut current));
        } else {
            current.push(c);
        }
    }
    terms.push(current);
    terms
}

/// Splits at the first operator occurrence, preferring `!=` then `==` then `=` at each position.
fn split_field_term(term: &str) -> Option<(&str, &'static str, &str)> {
    for (i, _) in term.char_indices() {
        let rest = term.get(i..)?;
        for op in ["!=", "==", "="] {
            if rest.starts_with(op) {
                return Some((term.get(..i)?, op, rest.get(op.len()..)?));
            }
        }
    }
    None
}

fn unescape_field_value(raw: &str) -> Result<String, SelectorError> {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(e @ ('\\' | ',' | '=')) => out.push(e),
                Some(other) => {
                    return Err(SelectorError::FieldValue(format!(
                        "invalid escape sequence: \\{other}"
                    )));
                }
                None => {
                    return Err(SelectorError::FieldValue(
                        "invalid escape sequence: trailing backslash".to_string(),
                    ));
                }
            },
            ',' | '=' => {
                return Err(SelectorError::FieldValue(format!(
                    "unescaped character in value: {c}"
                )));
            }
            _ => out.push(c),
        }
    }
    Ok(out)
}

/// Escapes `\`, `,` and `=` in a field selector value.
pub fn escape_field_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '\\' | ',' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
