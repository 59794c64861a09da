//! Table tests of the solver through `testing::check`.

mod cases;
mod props;
