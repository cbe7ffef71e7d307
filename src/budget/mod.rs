//! Spend limits (`docs/budgets.md`): which counter lines a call is charged to, what its worst case is,
//! and how a reservation is sized and settled.

pub mod charge;
pub mod lines;
pub mod metrics;
pub mod parts;
pub mod recorder;
pub mod settle;
pub mod size;
pub mod tap;
