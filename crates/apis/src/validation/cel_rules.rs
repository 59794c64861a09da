//! `x-kubernetes-validations`: the CEL environment (standard library, the strings and lists
//! extensions, and the Kubernetes library functions our CRDs use), rule compilation, JSON to
//! CEL conversion and rule evaluation with the apiserver's error wording.

use std::collections::HashMap;
use std::sync::Arc;

use cel::common::types::{DYN_TYPE, INT_TYPE, LIST_TYPE, STRING_TYPE};
use cel::common::value::CowVal;
use cel::objects::{Key, Map, OptionalValue};
use cel::{Context, Env, ExecutionError, Program, Value as CelValue, extensions};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::ValidationRule;
use serde_json::Value;

use super::errors::{BadValue, ErrorType, FieldError, SchemaError};
use super::path::{FieldPath, Segment};
use super::schema::{JsonType, Node};

/// Functions (beyond operators, which the parser names `_x_`, `@x` or `!_`) a rule may call.
const KNOWN_FUNCTIONS: &[&str] = &[
    // CEL standard library.
    "size",
    "int",
    "uint",
    "double",
    "string",
    "bytes",
    "bool",
    "duration",
    "timestamp",
    "type",
    "dyn",
    "matches",
    "contains",
    "startsWith",
    "endsWith",
    "getDate",
    "getDayOfMonth",
    "getDayOfWeek",
    "getDayOfYear",
    "getFullYear",
    "getHours",
    "getMilliseconds",
    "getMinutes",
    "getMonth",
    "getSeconds",
    "optional.of",
    "optional.none",
    "optional.ofNonZeroValue",
    "hasValue",
    "value",
    "or",
    "orValue",
    // cel-go ext.Strings, as Kubernetes enables it.
    "charAt",
    "indexOf",
    "lastIndexOf",
    "join",
    "lowerAscii",
    "upperAscii",
    "trim",
    "replace",
    "split",
    "substring",
    "format",
    "strings.quote",
    "reverse",
    // cel-go ext.Lists.
    "slice",
    "flatten",
    "distinct",
    "sort",
    "lists.range",
    // Kubernetes regex, list and sets libraries (registered here).
    "find",
    "findAll",
    "isSorted",
    "sum",
    "min",
    "max",
    "sets.contains",
    "sets.equivalent",
    "sets.intersects",
    // The parser names a namespaced call `ns.f(..)` by its last part.
    "of",
    "none",
    "ofNonZeroValue",
    "quote",
    "range",
    "equivalent",
    "intersects",
];

/// A compiled `x-kubernetes-validations` entry.
pub(crate) struct Rule {
    source: String,
    program: Program,
    message: Option<String>,
    message_expression: Option<Program>,
    field_path: Vec<Segment>,
    reason: Option<ErrorType>,
    pub(crate) uses_old_self: bool,
    /// `optionalOldSelf`: the rule also runs without an old value, seeing `oldSelf` as an
    /// optional (`optional.none()` on create).
    optional_old_self: bool,
}

/// Where a value sits: its path, whether it is the root of a resource (whose `metadata` rules
/// see only `name` and `generateName`), and whether an update left it unchanged.
pub(crate) struct Site<'p> {
    pub(crate) path: &'p FieldPath,
    pub(crate) resource_root: bool,
    pub(crate) unchanged: bool,
}

impl<'p> Site<'p> {
    /// A value inside a resource (not its root).
    pub(crate) fn nested(path: &'p FieldPath, unchanged: bool) -> Self {
        Self {
            path,
            resource_root: false,
            unchanged,
        }
    }
}

/// The shared CEL environment: built once per validator.
pub(crate) struct CelEnv {
    env: Arc<Env>,
}

fn env_error(e: impl std::fmt::Display) -> SchemaError {
    SchemaError::Environment(e.to_string())
}

impl CelEnv {
    pub(crate) fn new() -> Result<Self, SchemaError> {
        let mut env = Env::stdlib();
        env.add_extension(extensions::strings).map_err(env_error)?;
        env.add_extension(extensions::lists).map_err(env_error)?;
        register_kubernetes_library(&mut env).map_err(env_error)?;
        Ok(Self { env: Arc::new(env) })
    }

    fn parse(&self, source: &str, path: &str) -> Result<Program, SchemaError> {
        let program = self
            .env
            .compile(source)
            .map_err(|e| SchemaError::CelCompile {
                path: path.to_owned(),
                rule: source.to_owned(),
                reason: e.to_string(),
            })?;
        let references = program.references();
        let mut functions = references.functions();
        functions.sort_unstable();
        for function in functions {
            let operator =
                function.starts_with('_') || function.starts_with('@') || function.starts_with('!');
            if !operator && !KNOWN_FUNCTIONS.contains(&function) {
                return Err(SchemaError::UnsupportedFunction {
                    path: path.to_owned(),
                    rule: source.to_owned(),
                    function: function.to_owned(),
                });
            }
        }
        Ok(program)
    }

    pub(crate) fn compile_rule(
        &self,
        raw: &ValidationRule,
        node: &Node,
        path: &str,
    ) -> Result<Rule, SchemaError> {
        let program = self.parse(&raw.rule, path)?;
        let uses_old_self = program.references().has_variable("oldSelf");
        let message_expression = match raw.message_expression.as_deref() {
            Some(expr) if !expr.trim().is_empty() => Some(self.parse(expr, path)?),
            _ => None,
        };
        let field_path = match raw.field_path.as_deref() {
            Some(fp) if !fp.is_empty() => {
                parse_field_path(fp, node).map_err(|reason| SchemaError::InvalidFieldPath {
                    path: path.to_owned(),
                    field_path: fp.to_owned(),
                    reason,
                })?
            }
            _ => Vec::new(),
        };
        let reason =
            match raw.reason.as_deref() {
                None | Some("") => None,
                Some(r) => Some(ErrorType::from_rule_reason(r).ok_or_else(|| {
                    SchemaError::InvalidReason {
                        path: path.to_owned(),
                        reason: r.to_owned(),
                    }
                })?),
            };
        Ok(Rule {
            source: raw.rule.clone(),
            program,
            message: raw.message.clone().filter(|m| !m.trim().is_empty()),
            message_expression,
            field_path,
            reason,
            uses_old_self,
            optional_old_self: uses_old_self && raw.optional_old_self.unwrap_or(false),
        })
    }

    /// Evaluates the rules on `node` against `new` (and `old` for transition rules), appending
    /// failures at `site.path`. An unchanged site drops failures of non-transition rules, as
    /// the apiserver ratchets values an update left as they were.
    pub(crate) fn evaluate(
        &self,
        node: &Node,
        new: &Value,
        old: Option<&Value>,
        site: &Site<'_>,
        errors: &mut Vec<FieldError>,
    ) {
        let (path, resource_root, ratcheted) = (site.path, site.resource_root, site.unchanged);
        if node.rules.is_empty() || new.is_null() {
            return;
        }
        let self_value = to_cel(Some(node), new, resource_root);
        let old = old.filter(|o| !o.is_null());
        let old_value = match old {
            Some(old) if node.rules.iter().any(|r| r.uses_old_self) => {
                Some(to_cel(Some(node), old, resource_root))
            }
            _ => None,
        };
        let mut context = Context::with_env(Arc::clone(&self.env));
        context.add_variable_from_value("self", self_value.clone());
        if let Some(old_value) = &old_value {
            context.add_variable_from_value("oldSelf", old_value.clone());
        }
        let optional_context = node.rules.iter().any(|r| r.optional_old_self).then(|| {
            let optional = match &old_value {
                Some(old_value) => OptionalValue::of(old_value.clone()),
                None => OptionalValue::none(),
            };
            let mut context = Context::with_env(Arc::clone(&self.env));
            context.add_variable_from_value("self", self_value.clone());
            context.add_variable_from_value("oldSelf", CelValue::Opaque(Arc::new(optional)));
            context
        });
        for rule in &node.rules {
            if rule.uses_old_self && old_value.is_none() && !rule.optional_old_self {
                continue;
            }
            let rule_context = match (&optional_context, rule.optional_old_self) {
                (Some(optional), true) => optional,
                _ => &context,
            };
            let error_text = rule_error_string(rule);
            let type_value = Value::String(node.type_name().to_owned());
            match rule.program.execute(rule_context) {
                Ok(CelValue::Bool(true)) => {}
                Ok(CelValue::Bool(false)) => {
                    if ratcheted && !rule.uses_old_self {
                        continue;
                    }
                    let detail = rule
                        .message_expression
                        .as_ref()
                        .and_then(|expr| evaluated_message(expr, &context))
                        .unwrap_or_else(|| match &rule.message {
                            Some(message) => message.trim().to_owned(),
                            None => format!("failed rule: {error_text}"),
                        });
                    let at = path.join(&rule.field_path);
                    errors.push(match rule.reason {
                        Some(ErrorType::Forbidden) => FieldError::forbidden(at, detail),
                        Some(ErrorType::Required) => FieldError::required(at, detail),
                        Some(ErrorType::Duplicate) => {
                            FieldError::duplicate(at, BadValue::Json(type_value))
                        }
                        _ => FieldError::invalid(at, type_value, detail),
                    });
                }
                Ok(other) => errors.push(FieldError::invalid(
                    path.clone(),
                    type_value,
                    format!(
                        "rule evaluated to {} instead of a boolean evaluating rule: {error_text}",
                        other.type_of()
                    ),
                )),
                Err(error) => {
                    if ratcheted && !rule.uses_old_self {
                        continue;
                    }
                    let detail = match &error {
                        ExecutionError::NoSuchOverload(_) => format!(
                            "'no such overload': call arguments did not match a supported operator, function or macro signature for rule: {error_text}"
                        ),
                        other => format!("{} evaluating rule: {error_text}", go_style_error(other)),
                    };
                    errors.push(FieldError::invalid(path.clone(), type_value, detail));
                }
            }
        }
    }
}

fn rule_error_string(rule: &Rule) -> String {
    match &rule.message {
        Some(message) => message.trim().to_owned(),
        None => rule.source.trim().to_owned(),
    }
}

/// The message a `messageExpression` produces, or `None` when the apiserver would fall back
/// to `message` (evaluation error, not a string, empty, or containing a line break).
fn evaluated_message(expr: &Program, context: &Context<'_, '_>) -> Option<String> {
    match expr.execute(context) {
        Ok(CelValue::String(s)) => {
            let trimmed = s.trim();
            (!trimmed.is_empty() && !trimmed.contains('\n') && trimmed.len() <= 5 * 1024)
                .then(|| trimmed.to_owned())
        }
        _ => None,
    }
}

/// cel-go's wording for the runtime errors rules commonly hit.
fn go_style_error(error: &ExecutionError) -> String {
    match error {
        ExecutionError::NoSuchKey(key) => format!("no such key: {key}"),
        ExecutionError::IndexOutOfBounds(index) => match index {
            CelValue::Int(i) => format!("index out of bounds: {i}"),
            CelValue::UInt(i) => format!("index out of bounds: {i}"),
            other => format!("index out of bounds: {other:?}"),
        },
        ExecutionError::DivisionByZero(_) => "division by zero".to_owned(),
        ExecutionError::RemainderByZero(_) => "modulus by zero".to_owned(),
        ExecutionError::Overflow(..) => "integer overflow".to_owned(),
        ExecutionError::UndeclaredReference(name) => format!("no such attribute: {name}"),
        // cel-go reports a failed string conversion by the types alone.
        ExecutionError::FunctionError { function, message }
            if matches!(function.as_str(), "int" | "uint" | "double")
                && message.starts_with("string parse error") =>
        {
            format!("type conversion error from 'string' to '{function}'")
        }
        ExecutionError::FunctionError { function, message } => format!("{function}: {message}"),
        other => other.to_string(),
    }
}

/// Parses a rule's `fieldPath` (`.a.b`, `.a['b.c']`) against the schema it sits on.
fn parse_field_path(field_path: &str, node: &Node) -> Result<Vec<Segment>, String> {
    let mut segments = Vec::new();
    let mut current = node;
    let mut rest = field_path;
    while !rest.is_empty() {
        let name: String;
        if let Some(after) = rest.strip_prefix("['") {
            let end = after
                .find("']")
                .ok_or_else(|| "unterminated ['...']".to_owned())?;
            name = after[..end].replace("\\'", "'").replace("\\\\", "\\");
            rest = &after[end + 2..];
        } else if let Some(after) = rest.strip_prefix('.') {
            let end = after.find(['.', '[']).unwrap_or(after.len());
            if end == 0 {
                return Err("empty field name".to_owned());
            }
            name = after[..end].to_owned();
            rest = &after[end..];
        } else {
            return Err(format!("expected [ or . but got: {rest}"));
        }
        if !current.properties.is_empty() {
            current = current
                .properties
                .get(&name)
                .ok_or_else(|| "does not refer to a valid field".to_owned())?;
            segments.push(Segment::Child(name));
        } else if let super::schema::Additional::Schema(values) = &current.additional {
            current = values;
            segments.push(Segment::Key(name));
        } else {
            return Err("does not refer to a valid field".to_owned());
        }
    }
    Ok(segments)
}

/// Object metadata fields a rule can see at a resource root (the apiserver exposes only these).
const CEL_VISIBLE_METADATA: &[&str] = &["name", "generateName"];

/// Converts JSON to a CEL value, typed by the schema where it has one: `integer` as int,
/// `number` as double, objects and maps as maps keyed by string.
pub(crate) fn to_cel(node: Option<&Node>, value: &Value, resource_root: bool) -> CelValue {
    match value {
        Value::Null => CelValue::Null,
        Value::Bool(b) => CelValue::Bool(*b),
        Value::Number(n) => {
            let wants_double = node.is_some_and(|n| n.ty == Some(JsonType::Number));
            match (n.as_i64(), wants_double) {
                (Some(i), false) => CelValue::Int(i),
                _ => match (n.as_u64(), wants_double) {
                    (Some(u), false) => CelValue::UInt(u),
                    _ => CelValue::Float(n.as_f64().unwrap_or(f64::NAN)),
                },
            }
        }
        Value::String(s) => CelValue::String(Arc::new(s.clone())),
        Value::Array(items) => {
            let item_node = node.and_then(|n| n.items.as_deref());
            CelValue::List(Arc::new(
                items.iter().map(|i| to_cel(item_node, i, false)).collect(),
            ))
        }
        Value::Object(fields) => {
            let is_resource = resource_root || node.is_some_and(|n| n.embedded);
            let mut map: HashMap<Key, CelValue> = HashMap::with_capacity(fields.len());
            for (key, field) in fields {
                let child = node.and_then(|n| n.child(key));
                let converted = if is_resource && key == "metadata" {
                    match field {
                        Value::Object(meta) => {
                            let visible: HashMap<Key, CelValue> = meta
                                .iter()
                                .filter(|(k, _)| CEL_VISIBLE_METADATA.contains(&k.as_str()))
                                .map(|(k, v)| {
                                    (Key::String(Arc::new(k.clone())), to_cel(None, v, false))
                                })
                                .collect();
                            CelValue::Map(Map {
                                map: Arc::new(visible),
                            })
                        }
                        other => to_cel(child, other, false),
                    }
                } else {
                    to_cel(child, field, false)
                };
                // Declared properties are CEL fields and go by their escaped names; map keys
                // (additionalProperties, preserved unknown fields) stay as they are.
                let declared = node.is_some_and(|n| n.properties.contains_key(key));
                let name = if declared {
                    escape_property(key)
                } else {
                    Some(key.clone())
                };
                if let Some(name) = name {
                    map.insert(Key::String(Arc::new(name)), converted);
                }
            }
            CelValue::Map(Map { map: Arc::new(map) })
        }
    }
}

/// Identifiers CEL reserves, which the apiserver exposes as `__name__`.
const CEL_RESERVED: &[&str] = &[
    "true",
    "false",
    "null",
    "in",
    "as",
    "break",
    "const",
    "continue",
    "else",
    "for",
    "function",
    "if",
    "import",
    "let",
    "loop",
    "package",
    "namespace",
    "return",
    "var",
    "void",
    "while",
];

/// A property name as a rule sees it: reserved words wrapped in `__`, and `_`, `.`, `-`, `/`
/// spelled out (`__underscores__`, `__dot__`, `__dash__`, `__slash__`). A name that cannot be
/// escaped (other characters, or a leading digit) is invisible to rules, as in the apiserver.
pub(crate) fn escape_property(name: &str) -> Option<String> {
    if CEL_RESERVED.contains(&name) {
        return Some(format!("__{name}__"));
    }
    let first = name.chars().next()?;
    if !(first.is_ascii_alphabetic() || first == '_') {
        return None;
    }
    if name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') && !name.contains("__") {
        return Some(name.to_owned());
    }
    let mut escaped = String::with_capacity(name.len() + 8);
    let mut rest = name;
    while let Some(c) = rest.chars().next() {
        if let Some(after) = rest.strip_prefix("__") {
            escaped.push_str("__underscores__");
            rest = after;
            continue;
        }
        match c {
            '.' => escaped.push_str("__dot__"),
            '-' => escaped.push_str("__dash__"),
            '/' => escaped.push_str("__slash__"),
            c if c.is_ascii_alphanumeric() || c == '_' => escaped.push(c),
            _ => return None,
        }
        rest = &rest[c.len_utf8()..];
    }
    Some(escaped)
}

// ---- Kubernetes CEL library functions -------------------------------------------------------

fn values(args: &[CowVal<'_, '_>]) -> Result<Vec<CelValue>, ExecutionError> {
    args.iter()
        .map(|a| CelValue::try_from(a.as_ref()))
        .collect()
}

fn ret<'b, 'v>(value: CelValue) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let boxed: Box<dyn cel::common::value::Val> = value.try_into()?;
    Ok(CowVal::from(boxed))
}

fn string_arg(value: &CelValue, function: &str) -> Result<Arc<String>, ExecutionError> {
    match value {
        CelValue::String(s) => Ok(Arc::clone(s)),
        other => Err(ExecutionError::function_error(
            function,
            format!("expected string, got {}", other.type_of()),
        )),
    }
}

fn list_arg(value: &CelValue, function: &str) -> Result<Arc<Vec<CelValue>>, ExecutionError> {
    match value {
        CelValue::List(l) => Ok(Arc::clone(l)),
        other => Err(ExecutionError::function_error(
            function,
            format!("expected list, got {}", other.type_of()),
        )),
    }
}

/// Most rule regexes are literals evaluated for every list item; compiling one costs far more
/// than matching it, so each thread keeps the ones it has compiled (bounded, and cleared when
/// full). Function overloads are plain `fn`s, so the cache cannot live in the environment.
const REGEX_CACHE_CAPACITY: usize = 256;

thread_local! {
    static REGEX_CACHE: std::cell::RefCell<HashMap<String, regex::Regex>> =
        std::cell::RefCell::new(HashMap::new());
}

fn compile_regex(pattern: &str, function: &str) -> Result<regex::Regex, ExecutionError> {
    REGEX_CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        if let Some(regex) = cache.get(pattern) {
            return Ok(regex.clone());
        }
        let regex =
            regex::Regex::new(pattern).map_err(|e| ExecutionError::function_error(function, e))?;
        if cache.len() >= REGEX_CACHE_CAPACITY {
            cache.clear();
        }
        cache.insert(pattern.to_owned(), regex.clone());
        Ok(regex)
    })
}

fn find<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let args = values(&args)?;
    let [this, pattern] = args.as_slice() else {
        return Err(ExecutionError::invalid_argument_count(2, args.len()));
    };
    let (this, pattern) = (string_arg(this, "find")?, string_arg(pattern, "find")?);
    let regex = compile_regex(&pattern, "find")?;
    let found = regex
        .find(&this)
        .map(|m| m.as_str().to_owned())
        .unwrap_or_default();
    ret(CelValue::String(Arc::new(found)))
}

fn find_all<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let args = values(&args)?;
    let (this, pattern, limit) = match args.as_slice() {
        [this, pattern] => (this, pattern, -1),
        [this, pattern, CelValue::Int(n)] => (this, pattern, *n),
        _ => return Err(ExecutionError::invalid_argument_count(3, args.len())),
    };
    let (this, pattern) = (
        string_arg(this, "findAll")?,
        string_arg(pattern, "findAll")?,
    );
    let regex = compile_regex(&pattern, "findAll")?;
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let found: Vec<CelValue> = regex
        .find_iter(&this)
        .take(limit)
        .map(|m| CelValue::String(Arc::new(m.as_str().to_owned())))
        .collect();
    ret(CelValue::List(Arc::new(found)))
}

fn compare(
    a: &CelValue,
    b: &CelValue,
    function: &str,
) -> Result<std::cmp::Ordering, ExecutionError> {
    a.partial_cmp(b).ok_or_else(|| {
        ExecutionError::function_error(
            function,
            format!("cannot compare {} and {}", a.type_of(), b.type_of()),
        )
    })
}

fn is_sorted<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let args = values(&args)?;
    let list = list_arg(args.first().unwrap_or(&CelValue::Null), "isSorted")?;
    for pair in list.windows(2) {
        if let [a, b] = pair
            && compare(a, b, "isSorted")? == std::cmp::Ordering::Greater
        {
            return ret(CelValue::Bool(false));
        }
    }
    ret(CelValue::Bool(true))
}

fn sum<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let args = values(&args)?;
    let list = list_arg(args.first().unwrap_or(&CelValue::Null), "sum")?;
    let mut total = CelValue::Int(0);
    for (i, item) in list.iter().enumerate() {
        total = match (&total, item) {
            (_, v) if i == 0 => v.clone(),
            (CelValue::Int(a), CelValue::Int(b)) => CelValue::Int(
                a.checked_add(*b)
                    .ok_or_else(|| ExecutionError::function_error("sum", "integer overflow"))?,
            ),
            (CelValue::UInt(a), CelValue::UInt(b)) => CelValue::UInt(
                a.checked_add(*b)
                    .ok_or_else(|| ExecutionError::function_error("sum", "integer overflow"))?,
            ),
            (CelValue::Float(a), CelValue::Float(b)) => CelValue::Float(a + b),
            (a, b) => {
                return Err(ExecutionError::function_error(
                    "sum",
                    format!("cannot add {} and {}", a.type_of(), b.type_of()),
                ));
            }
        };
    }
    ret(total)
}

fn extreme<'b, 'v>(
    args: Vec<CowVal<'b, 'v>>,
    function: &str,
    keep: std::cmp::Ordering,
) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let args = values(&args)?;
    let list = list_arg(args.first().unwrap_or(&CelValue::Null), function)?;
    let mut best: Option<&CelValue> = None;
    for item in list.iter() {
        best = match best {
            Some(current) if compare(item, current, function)? != keep => Some(current),
            _ => Some(item),
        };
    }
    match best {
        Some(v) => ret(v.clone()),
        None => Err(ExecutionError::function_error(
            function,
            format!("{function} called on empty list"),
        )),
    }
}

fn list_min<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    extreme(args, "min", std::cmp::Ordering::Less)
}

fn list_max<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    extreme(args, "max", std::cmp::Ordering::Greater)
}

fn list_position(
    args: Vec<CowVal<'_, '_>>,
    function: &str,
    last: bool,
) -> Result<CelValue, ExecutionError> {
    let args = values(&args)?;
    let [list, needle] = args.as_slice() else {
        return Err(ExecutionError::invalid_argument_count(2, args.len()));
    };
    let list = list_arg(list, function)?;
    let found = if last {
        list.iter().rposition(|item| item == needle)
    } else {
        list.iter().position(|item| item == needle)
    };
    Ok(CelValue::Int(
        found.and_then(|i| i64::try_from(i).ok()).unwrap_or(-1),
    ))
}

fn list_index_of<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    ret(list_position(args, "indexOf", false)?)
}

fn list_last_index_of<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    ret(list_position(args, "lastIndexOf", true)?)
}

/// Two list arguments, as the sets functions take.
type ListPair = (Arc<Vec<CelValue>>, Arc<Vec<CelValue>>);

fn two_lists(args: Vec<CowVal<'_, '_>>, function: &str) -> Result<ListPair, ExecutionError> {
    let args = values(&args)?;
    let [a, b] = args.as_slice() else {
        return Err(ExecutionError::invalid_argument_count(2, args.len()));
    };
    Ok((list_arg(a, function)?, list_arg(b, function)?))
}

fn sets_contains<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let (a, b) = two_lists(args, "sets.contains")?;
    ret(CelValue::Bool(b.iter().all(|x| a.contains(x))))
}

fn sets_equivalent<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let (a, b) = two_lists(args, "sets.equivalent")?;
    ret(CelValue::Bool(
        b.iter().all(|x| a.contains(x)) && a.iter().all(|x| b.contains(x)),
    ))
}

fn sets_intersects<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let (a, b) = two_lists(args, "sets.intersects")?;
    ret(CelValue::Bool(b.iter().any(|x| a.contains(x))))
}

fn register_kubernetes_library(env: &mut Env) -> Result<(), cel::DeclarationError> {
    env.add_member_overload(
        "find",
        "string.find(string)",
        STRING_TYPE,
        vec![STRING_TYPE],
        find,
    )?;
    env.add_member_overload(
        "findAll",
        "string.findAll(string)",
        STRING_TYPE,
        vec![STRING_TYPE],
        find_all,
    )?;
    env.add_member_overload(
        "findAll",
        "string.findAll(string,int)",
        STRING_TYPE,
        vec![STRING_TYPE, INT_TYPE],
        find_all,
    )?;
    env.add_member_overload("isSorted", "list.isSorted()", LIST_TYPE, vec![], is_sorted)?;
    env.add_member_overload("sum", "list.sum()", LIST_TYPE, vec![], sum)?;
    env.add_member_overload("min", "list.min()", LIST_TYPE, vec![], list_min)?;
    env.add_member_overload("max", "list.max()", LIST_TYPE, vec![], list_max)?;
    env.add_member_overload(
        "indexOf",
        "list.indexOf(dyn)",
        LIST_TYPE,
        vec![DYN_TYPE],
        list_index_of,
    )?;
    env.add_member_overload(
        "lastIndexOf",
        "list.lastIndexOf(dyn)",
        LIST_TYPE,
        vec![DYN_TYPE],
        list_last_index_of,
    )?;
    env.add_overload(
        "sets.contains",
        "sets.contains(list,list)",
        vec![LIST_TYPE, LIST_TYPE],
        sets_contains,
    )?;
    env.add_overload(
        "sets.equivalent",
        "sets.equivalent(list,list)",
        vec![LIST_TYPE, LIST_TYPE],
        sets_equivalent,
    )?;
    env.add_overload(
        "sets.intersects",
        "sets.intersects(list,list)",
        vec![LIST_TYPE, LIST_TYPE],
        sets_intersects,
    )?;
    Ok(())
}
