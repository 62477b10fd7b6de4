//! The run report: HTML with inline SVG plots.

pub mod svg;
