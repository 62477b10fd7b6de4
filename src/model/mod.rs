//! The MFD model: metadata encoding, hypernetworks, trunk, head and adversaries, written once against the
//! `Backend` trait.

// Layer functions take one argument per buffer, like the backend ops they call.
#![allow(clippy::too_many_arguments)]

pub mod block;
pub mod grad_ready;
pub mod hypernet;
pub mod metadata;
pub mod mfd;
pub mod mlp;
pub mod params;
pub mod spec;
pub mod trunk;
