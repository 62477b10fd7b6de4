//! The run report: one self-contained HTML page with inline SVG charts drawn by plotters (`svg`), the ROC and PR
//! curves it plots (`curves`) and the page itself (`html`).

pub mod curves;
pub mod html;
pub mod svg;
