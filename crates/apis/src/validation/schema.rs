//! The CRD's OpenAPI v3 schema compiled once into a tree the walkers share: regexes built,
//! CEL programs parsed, extensions decoded.

use std::collections::BTreeMap;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use regex::Regex;
use serde_json::Value;

use super::cel_rules::{CelEnv, Rule};
use super::errors::SchemaError;

/// A JSON type named by the schema's `type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum JsonType {
    Object,
    Array,
    String,
    Integer,
    Number,
    Boolean,
}

impl JsonType {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "object" => JsonType::Object,
            "array" => JsonType::Array,
            "string" => JsonType::String,
            "integer" => JsonType::Integer,
            "number" => JsonType::Number,
            "boolean" => JsonType::Boolean,
            _ => return None,
        })
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            JsonType::Object => "object",
            JsonType::Array => "array",
            JsonType::String => "string",
            JsonType::Integer => "integer",
            JsonType::Number => "number",
            JsonType::Boolean => "boolean",
        }
    }
}

/// What a schema says about keys it does not list in `properties`.
pub(crate) enum Additional {
    Absent,
    Bool(bool),
    Schema(Box<Node>),
}

/// `x-kubernetes-list-type`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ListType {
    Atomic,
    Set,
    Map(Vec<String>),
}

/// One compiled schema node.
pub(crate) struct Node {
    pub(crate) ty: Option<JsonType>,
    pub(crate) nullable: bool,
    pub(crate) format: Option<String>,
    pub(crate) enumeration: Option<Vec<Value>>,
    pub(crate) pattern: Option<(String, Regex)>,
    pub(crate) minimum: Option<f64>,
    pub(crate) exclusive_minimum: bool,
    pub(crate) maximum: Option<f64>,
    pub(crate) exclusive_maximum: bool,
    pub(crate) multiple_of: Option<f64>,
    pub(crate) min_length: Option<u64>,
    pub(crate) max_length: Option<u64>,
    pub(crate) min_items: Option<u64>,
    pub(crate) max_items: Option<u64>,
    pub(crate) min_properties: Option<u64>,
    pub(crate) max_properties: Option<u64>,
    pub(crate) required: Vec<String>,
    pub(crate) properties: BTreeMap<String, Node>,
    pub(crate) additional: Additional,
    pub(crate) items: Option<Box<Node>>,
    pub(crate) default: Option<Value>,
    pub(crate) preserve_unknown: bool,
    pub(crate) int_or_string: bool,
    pub(crate) embedded: bool,
    pub(crate) list_type: ListType,
    pub(crate) map_atomic: bool,
    pub(crate) all_of: Vec<Node>,
    pub(crate) any_of: Vec<Node>,
    pub(crate) one_of: Vec<Node>,
    pub(crate) not: Option<Box<Node>>,
    pub(crate) rules: Vec<Rule>,
    subtree_rules: bool,
}

impl Node {
    /// The schema for the value under `key` of an object value, if the schema declares one.
    pub(crate) fn child(&self, key: &str) -> Option<&Node> {
        match self.properties.get(key) {
            Some(node) => Some(node),
            None => match &self.additional {
                Additional::Schema(node) => Some(node),
                _ => None,
            },
        }
    }

    /// The `type` string the apiserver prints as the value of CEL rule errors.
    pub(crate) fn type_name(&self) -> &'static str {
        self.ty.map(JsonType::name).unwrap_or("")
    }

    /// Whether this node or anything under it has CEL rules.
    pub(crate) fn has_rules(&self) -> bool {
        self.subtree_rules
    }
}

fn bound(value: Option<i64>) -> Option<u64> {
    value.map(|v| u64::try_from(v).unwrap_or(0))
}

/// Compiles `props` found at schema location `path` (dotted, for error messages).
pub(crate) fn compile(
    props: &JSONSchemaProps,
    path: &str,
    env: &CelEnv,
) -> Result<Node, SchemaError> {
    let mut properties = BTreeMap::new();
    for (name, child) in props.properties.iter().flatten() {
        properties.insert(name.clone(), compile(child, &join(path, name), env)?);
    }
    let additional = match &props.additional_properties {
        None => Additional::Absent,
        Some(JSONSchemaPropsOrBool::Bool(allowed)) => Additional::Bool(*allowed),
        Some(JSONSchemaPropsOrBool::Schema(schema)) => Additional::Schema(Box::new(compile(
            schema,
            &join(path, "additionalProperties"),
            env,
        )?)),
    };
    let items = match &props.items {
        None => None,
        Some(JSONSchemaPropsOrArray::Schema(schema)) => {
            Some(Box::new(compile(schema, &join(path, "items"), env)?))
        }
        // Structural schemas forbid tuple `items`; the first schema is the best we can do.
        Some(JSONSchemaPropsOrArray::Schemas(schemas)) => match schemas.first() {
            Some(schema) => Some(Box::new(compile(schema, &join(path, "items"), env)?)),
            None => None,
        },
    };
    let compile_all =
        |list: &Option<Vec<JSONSchemaProps>>, what: &str| -> Result<Vec<Node>, SchemaError> {
            list.iter()
                .flatten()
                .enumerate()
                .map(|(i, s)| compile(s, &format!("{}[{i}]", join(path, what)), env))
                .collect()
        };
    let all_of = compile_all(&props.all_of, "allOf")?;
    let any_of = compile_all(&props.any_of, "anyOf")?;
    let one_of = compile_all(&props.one_of, "oneOf")?;
    let not = match &props.not {
        Some(schema) => Some(Box::new(compile(schema, &join(path, "not"), env)?)),
        None => None,
    };
    let pattern = match &props.pattern {
        Some(pattern) => {
            let regex = Regex::new(pattern).map_err(|e| SchemaError::InvalidPattern {
                path: path.to_owned(),
                pattern: pattern.clone(),
                reason: e.to_string(),
            })?;
            Some((pattern.clone(), regex))
        }
        None => None,
    };
    let list_type = match props.x_kubernetes_list_type.as_deref() {
        Some("set") => ListType::Set,
        Some("map") => ListType::Map(props.x_kubernetes_list_map_keys.clone().unwrap_or_default()),
        _ => ListType::Atomic,
    };
    let mut node = Node {
        ty: props.type_.as_deref().and_then(JsonType::parse),
        nullable: props.nullable.unwrap_or(false),
        format: props.format.clone(),
        enumeration: props
            .enum_
            .as_ref()
            .map(|values| values.iter().map(|v| v.0.clone()).collect()),
        pattern,
        minimum: props.minimum,
        exclusive_minimum: props.exclusive_minimum.unwrap_or(false),
        maximum: props.maximum,
        exclusive_maximum: props.exclusive_maximum.unwrap_or(false),
        multiple_of: props.multiple_of,
        min_length: bound(props.min_length),
        max_length: bound(props.max_length),
        min_items: bound(props.min_items),
        max_items: bound(props.max_items),
        min_properties: bound(props.min_properties),
        max_properties: bound(props.max_properties),
        required: props.required.clone().unwrap_or_default(),
        properties,
        additional,
        items,
        default: props.default.as_ref().map(|d| d.0.clone()),
        preserve_unknown: props.x_kubernetes_preserve_unknown_fields.unwrap_or(false),
        int_or_string: props.x_kubernetes_int_or_string.unwrap_or(false),
        embedded: props.x_kubernetes_embedded_resource.unwrap_or(false),
        list_type,
        map_atomic: props.x_kubernetes_map_type.as_deref() == Some("atomic"),
        all_of,
        any_of,
        one_of,
        not,
        rules: Vec::new(),
        subtree_rules: false,
    };
    let mut rules = Vec::new();
    for raw in props.x_kubernetes_validations.iter().flatten() {
        rules.push(env.compile_rule(raw, &node, path)?);
    }
    node.subtree_rules = !rules.is_empty()
        || node.properties.values().any(Node::has_rules)
        || node.items.as_deref().is_some_and(Node::has_rules)
        || matches!(&node.additional, Additional::Schema(n) if n.has_rules())
        || node.all_of.iter().any(Node::has_rules);
    node.rules = rules;
    Ok(node)
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}
