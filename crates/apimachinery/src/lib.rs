//! Kubernetes API machinery as pure functions.
//!
//! Owns: label and field selectors (string syntax and `metav1.LabelSelector`), JSON patch
//! (RFC 6902), JSON merge patch (RFC 7386), strategic merge patch with the merge keys of the
//! built-in kinds and of CRD schemas, and server-side apply with `managedFields` bookkeeping.
//!
//! Must never depend on: tokio, kube's client or runtime, aws-sdk-*, prometheus, the clock,
//! the environment or the filesystem. Timestamps are passed in by the caller.
pub mod apply;
pub mod fields;
pub mod patch;
pub mod schema;
pub mod selector;
