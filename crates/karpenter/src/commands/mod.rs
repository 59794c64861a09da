//! One module per subcommand.

pub mod controller;
pub mod crds;
pub mod simulate;
