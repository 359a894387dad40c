//! Switchover execution: the pure planner (`plan`) and the executor that runs the steps
//! through idempotent `ensure_*` calls, persisting intent before each step and the
//! verified result after it.

pub mod executor;
pub mod flip;
pub mod plan;

#[cfg(test)]
mod executor_tests;
