//! Field paths rendered the way Kubernetes' `field.Path` renders them.

use std::fmt;

/// One step of a [`FieldPath`].
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Segment {
    /// A named field: `.name`.
    Child(String),
    /// A list index: `[3]`.
    Index(usize),
    /// A map key: `[key]`.
    Key(String),
}

/// A path to a field inside an object, e.g. `spec.template.spec.requirements[0].operator`.
///
/// The empty path renders as `<nil>`, as the apiserver renders a nil `*field.Path`.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FieldPath(Vec<Segment>);

impl FieldPath {
    /// The root path (renders as `<nil>`).
    pub fn root() -> Self {
        Self(Vec::new())
    }

    /// A path built from dotted field names, e.g. `FieldPath::new(["spec", "weight"])`.
    pub fn new<I, S>(names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self(
            names
                .into_iter()
                .map(|n| Segment::Child(n.into()))
                .collect(),
        )
    }

    /// This path extended by a named field.
    pub fn child(&self, name: &str) -> Self {
        self.with(Segment::Child(name.to_owned()))
    }

    /// This path extended by a list index.
    pub fn index(&self, index: usize) -> Self {
        self.with(Segment::Index(index))
    }

    /// This path extended by a map key.
    pub fn key(&self, key: &str) -> Self {
        self.with(Segment::Key(key.to_owned()))
    }

    /// This path extended by every segment of `rest`.
    pub fn join(&self, rest: &[Segment]) -> Self {
        let mut segments = self.0.clone();
        segments.extend(rest.iter().cloned());
        Self(segments)
    }

    /// The segments, outermost first.
    pub fn segments(&self) -> &[Segment] {
        &self.0
    }

    /// Whether this is the root path.
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    fn with(&self, segment: Segment) -> Self {
        let mut segments = Vec::with_capacity(self.0.len() + 1);
        segments.extend(self.0.iter().cloned());
        segments.push(segment);
        Self(segments)
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("<nil>");
        }
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Child(name) if i == 0 => f.write_str(name)?,
                Segment::Child(name) => write!(f, ".{name}")?,
                Segment::Index(index) => write!(f, "[{index}]")?,
                Segment::Key(key) => write!(f, "[{key}]")?,
            }
        }
        Ok(())
    }
}
