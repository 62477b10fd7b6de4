//! The MFD model: metadata encoding, hypernetworks, trunk, head and adversaries.

pub mod metadata;
pub mod spec;
