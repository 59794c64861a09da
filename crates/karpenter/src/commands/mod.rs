//! One module per subcommand.

pub mod cluster;
pub mod controller;
pub mod crds;
pub mod simulate;
