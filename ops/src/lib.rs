//! The cuttle command line's library: the commands' logic, apart from argument parsing and
//! printing, so that tests and benchmarks can call it.
//!
//! - [`simulate`]: `cuttle simulate`, a discrete-event simulator of a deployment scenario through
//!   the real scheduling core.

pub mod simulate;
