//! The benchmark sweep of `ortho bench`: every case is an [`ortho::Operation`] on generated inputs,
//! defined once here with its flops, bytes and error bound ([`cases`]), measured on an engine by
//! [`ortho::Engine::measure`] into a [`Record`], and reported as `results.json` and `report.md`
//! ([`report`]) with SVG plots ([`plots`]).

pub mod cases;
pub mod compare;
pub mod inputs;
pub mod plots;
pub mod ratios;
pub mod report;
pub mod storage;

pub use cases::{Case, Sweep, sweep};
pub use report::{Record, Report};
