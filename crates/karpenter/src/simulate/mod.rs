//! `karpenter simulate`: what a NodePool change would do before it is applied.
//!
//! Owns: the scenario model and its loading ([`scenario`]), the step runner that feeds the real
//! solver (`karpenter-scheduling`) with the real embedded EC2 catalog (`karpenter-catalog`)
//! ([`engine`]), and the report with its text and JSON renderings ([`report`]). It decides
//! nothing itself: placements, NodeClaims and reasons all come from the solver. It never talks
//! to a cluster or to AWS.

pub mod engine;
pub mod instance_types;
pub mod report;
pub mod scenario;

pub use engine::run;
pub use scenario::{ScenarioSource, load};
