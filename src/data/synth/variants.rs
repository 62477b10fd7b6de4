//! SNVs with known effects: the planned sites of a contig are resolved in the chunk pass (where the reference
//! base is known), and their true effects are computed by re-evaluating the label model on the variant's tile.
//!
//! Classes: motif_breaking (most informative base of a planted site -> least likely base), motif_creating (the
//! one broken base of a pre-broken site -> consensus), gc_only (A->G or T->C at least 20 bp from any motif),
//! neutral (A<->T or C<->G, chosen so that no technical k-mer count changes where possible).
//! Key decision: the deltas are exact for the tile that contains the variant (tile = pos / 128): the motif count
//! changes by -1/+1 there, and GC and k-mers are recounted on the edited window. The variant also lies in the
//! neighbouring tile's window; that tile is not reported.

use super::elements::{ContigPlan, VariantClass};
use super::factors::{sequence_columns, window, Layout, SeqView, TILE};
use super::labels::LabelModel;
use std::ops::Range;

#[derive(Debug, Clone)]
pub struct Variant {
    /// 0-based position.
    pub pos: u64,
    pub reff: u8,
    pub alt: u8,
    pub class: VariantClass,
    pub motif: Option<usize>,
    /// Contig-local tile index.
    pub tile: u64,
    /// True delta z_bio / z_tech per experiment at `tile`.
    pub dz_bio: Vec<f32>,
    pub dz_tech: Vec<f32>,
}

/// Technical columns of `row` after applying `alt` at `pos`.
fn edited_row(lay: Layout, view: SeqView, plan: &ContigPlan, k: u64, pos: u64, alt: u8, row: &[f32]) -> Vec<f32> {
    let (ws, we) = window(k, plan.len);
    let mut w = view.seq[(ws - view.lo) as usize..(we - view.lo) as usize].to_vec();
    w[(pos - ws) as usize] = alt;
    let mut out = row.to_vec();
    sequence_columns(lay, SeqView { seq: &w, lo: ws }, k, plan.len, &mut out);
    out
}

fn base_at(view: SeqView, pos: u64) -> u8 {
    view.seq[(pos - view.lo) as usize]
}

/// Resolve planned variants whose tile is in `tiles`; `rows` are the factor rows of `tiles`.
pub fn resolve(
    plan: &ContigPlan,
    model: &LabelModel,
    view: SeqView,
    rows: &[f32],
    tiles: Range<u64>,
    out: &mut Vec<Variant>,
) {
    let lay = model.lay;
    let f = lay.width();
    let first = plan.variants.partition_point(|v| v.pos < tiles.start * TILE);
    for pv in plan.variants[first..].iter().take_while(|v| v.pos < tiles.end * TILE) {
        let row_of =
            |x: u64| &rows[((x / TILE - tiles.start) as usize) * f..((x / TILE - tiles.start) as usize + 1) * f];
        let candidates = (pv.pos..pv.pos + 32).filter(|&x| tiles.contains(&(x / TILE)));
        let chosen: Option<(u64, u8, Vec<f32>)> = match pv.class {
            VariantClass::MotifBreaking | VariantClass::MotifCreating => {
                let alt = pv.alt.unwrap_or(b'N');
                let m = pv.motif.unwrap_or(0);
                let mut r = edited_row(lay, view, plan, pv.pos / TILE, pv.pos, alt, row_of(pv.pos));
                r[m] += if pv.class == VariantClass::MotifBreaking { -1.0 } else { 1.0 };
                Some((pv.pos, alt, r))
            }
            VariantClass::GcOnly => candidates
                .filter_map(|x| match base_at(view, x) {
                    b'A' => Some((x, b'G')),
                    b'T' => Some((x, b'C')),
                    _ => None,
                })
                .map(|(x, alt)| (x, alt, edited_row(lay, view, plan, x / TILE, x, alt, row_of(x))))
                .next(),
            VariantClass::Neutral => {
                let all: Vec<(u64, u8, Vec<f32>)> = candidates
                    .filter_map(|x| {
                        let alt = match base_at(view, x) {
                            b'A' => b'T',
                            b'T' => b'A',
                            b'C' => b'G',
                            b'G' => b'C',
                            _ => return None,
                        };
                        Some((x, alt, edited_row(lay, view, plan, x / TILE, x, alt, row_of(x))))
                    })
                    .collect();
                let unchanged = all.iter().position(|(x, _, r)| r[..] == row_of(*x)[..]);
                all.into_iter().nth(unchanged.unwrap_or(0))
            }
        };
        let Some((pos, alt, alt_row)) = chosen else { continue };
        let ref_row = row_of(pos);
        let (zb0, zt0) = model.z_row(ref_row);
        let (zb1, zt1) = model.z_row(&alt_row);
        out.push(Variant {
            pos,
            reff: base_at(view, pos),
            alt,
            class: pv.class,
            motif: pv.motif,
            tile: pos / TILE,
            dz_bio: zb1.iter().zip(&zb0).map(|(a, b)| a - b).collect(),
            dz_tech: zt1.iter().zip(&zt0).map(|(a, b)| a - b).collect(),
        });
    }
}

/// Sort by position and drop duplicates (a GC-only or neutral site may have stepped onto another).
pub fn finalize(v: &mut Vec<Variant>) {
    v.sort_by_key(|x| x.pos);
    v.dedup_by_key(|x| x.pos);
}
