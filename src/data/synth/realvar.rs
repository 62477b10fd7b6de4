//! SNVs with known effects on real sequence (`chr20` presets), where nothing is planted: sites are chosen from the
//! scan, and every delta is exact because the edited tile is rescanned and recounted (scan.rs, factors.rs).
//!
//! Classes, per contig `per_class` of each, tiles visited in a seeded random order:
//! - motif_breaking: the best site of the tile's strongest label-relevant motif (strength > SCALE / 2): its most
//!   informative position -> the least likely base there.
//! - motif_creating: a relevant motif with a weak best site (0 < strength <= SCALE / 2): the position where the
//!   consensus base gains most log-odds -> that base.
//! - gc_only: A->G or T->C whose rescanned motif columns are unchanged (delta z_bio = 0 exactly).
//! - neutral: A<->T or C<->G that leaves the whole factor row unchanged (all deltas 0).
//!
//! Key decision: like the planted presets, the delta is that of the tile containing the variant; the variant also
//! lies in a neighbouring tile's window, which is not reported.

use super::elements::{complement, VariantClass};
use super::factors::{sequence_columns, window, Layout, SeqView, TILE};
use super::labels::LabelModel;
use super::scan::{Scanner, SCALE};
use super::variants::Variant;
use crate::rng::Rng;

pub const TAG_REALVAR: u64 = 9;
/// Positions tried per tile for gc_only and neutral.
const TRIES: usize = 24;

/// Factor row of tile `k` after putting `alt` at `pos` (`view` is the whole contig).
fn edited_row(lay: Layout, sc: &Scanner, view: SeqView, k: u64, pos: u64, alt: u8, row: &[f32]) -> Vec<f32> {
    let len = view.lo + view.seq.len() as u64;
    let (ws, we) = window(k, len);
    // The window plus the longest motif on each side: every site centred in the window.
    let (a, b) = (ws.saturating_sub(32).max(view.lo), (we + 32).min(len));
    let mut w = view.seq[(a - view.lo) as usize..(b - view.lo) as usize].to_vec();
    w[(pos - a) as usize] = alt;
    let v = SeqView { seq: &w, lo: a };
    let mut out = row.to_vec();
    sequence_columns(lay, v, k, len, &mut out);
    sc.tile_row(lay, v, k, len, &mut out);
    out
}

/// Variants of one real contig; `rows` are the factor rows of all its tiles, `relevant` the motifs with a
/// positive weight in some tissue.
#[allow(clippy::too_many_arguments)]
pub fn resolve_real(
    model: &LabelModel,
    sc: &Scanner,
    view: SeqView,
    rows: &[f32],
    relevant: &[usize],
    seed: u64,
    contig: u64,
    per_class: usize,
) -> Vec<Variant> {
    let lay = model.lay;
    let f = lay.width();
    let n_tiles = (rows.len() / f) as u64;
    let len = view.seq.len() as u64;
    let mut rng = Rng::derive(seed, &[TAG_REALVAR, contig]);
    let mut order: Vec<u64> = (1..n_tiles.saturating_sub(1)).collect();
    rng.shuffle(&mut order);
    let mut out: Vec<Variant> = Vec::new();
    let mut counts = [0usize; 4];
    let base = |x: u64| view.seq[x as usize];
    for &k in &order {
        if counts.iter().all(|&c| c >= per_class) {
            break;
        }
        let row = &rows[k as usize * f..(k as usize + 1) * f];
        let (tile_lo, tile_hi) = (k * TILE, k * TILE + TILE);
        let (ws, we) = window(k, len);
        let class =
            [VariantClass::MotifBreaking, VariantClass::MotifCreating, VariantClass::GcOnly, VariantClass::Neutral]
                [(k % 4) as usize];
        let ci = (k % 4) as usize;
        if counts[ci] >= per_class {
            continue;
        }
        let mut chosen: Option<(u64, u8, Option<usize>, Vec<f32>)> = None;
        match class {
            VariantClass::MotifBreaking | VariantClass::MotifCreating => {
                let breaking = class == VariantClass::MotifBreaking;
                let pick = relevant
                    .iter()
                    .copied()
                    .filter(|&m| if breaking { row[m] > SCALE / 2.0 } else { row[m] > 0.0 && row[m] <= SCALE / 2.0 })
                    .max_by(|&a, &b| row[a].total_cmp(&row[b]));
                let Some(m) = pick else { continue };
                let Some(site) = sc.best_site(m, view, ws, we, len) else { continue };
                let l = sc.len(m);
                // Site-oriented column j sits at start + j (plus strand) or start + l - 1 - j (minus strand).
                let at = |j: u64| if site.minus { site.start + l - 1 - j } else { site.start + j };
                let oriented = |b: u8| if site.minus { complement(b) } else { b };
                let mut best: Option<(f32, u64, u8)> = None;
                for j in 0..l {
                    let x = at(j);
                    if !(tile_lo..tile_hi).contains(&x) {
                        continue; // the delta is reported for the tile that contains the variant
                    }
                    let cur = oriented(base(x));
                    for alt in [b'A', b'C', b'G', b'T'] {
                        if alt == cur {
                            continue;
                        }
                        let gain = sc.column_score(m, j, alt) - sc.column_score(m, j, cur);
                        let key = if breaking { -gain } else { gain };
                        if best.is_none_or(|b| key > b.0) {
                            best = Some((key, x, oriented(alt)));
                        }
                    }
                }
                let Some((key, x, alt)) = best else { continue };
                if key <= 0.0 {
                    continue;
                }
                chosen = Some((x, alt, Some(m), edited_row(lay, sc, view, k, x, alt, row)));
            }
            VariantClass::GcOnly | VariantClass::Neutral => {
                for _ in 0..TRIES {
                    let x = tile_lo + rng.below(TILE);
                    let alt = match (class, base(x)) {
                        (VariantClass::GcOnly, b'A') => b'G',
                        (VariantClass::GcOnly, b'T') => b'C',
                        (VariantClass::Neutral, b'A') => b'T',
                        (VariantClass::Neutral, b'T') => b'A',
                        (VariantClass::Neutral, b'C') => b'G',
                        (VariantClass::Neutral, b'G') => b'C',
                        _ => continue,
                    };
                    let r = edited_row(lay, sc, view, k, x, alt, row);
                    let keep = match class {
                        VariantClass::GcOnly => r[..lay.n_motifs] == row[..lay.n_motifs],
                        _ => r[..] == row[..],
                    };
                    if keep {
                        chosen = Some((x, alt, None, r));
                        break;
                    }
                }
            }
        }
        let Some((pos, alt, motif, alt_row)) = chosen else { continue };
        let (zb0, zt0) = model.z_row(row);
        let (zb1, zt1) = model.z_row(&alt_row);
        out.push(Variant {
            pos,
            reff: base(pos),
            alt,
            class,
            motif,
            tile: k,
            dz_bio: zb1.iter().zip(&zb0).map(|(a, b)| a - b).collect(),
            dz_tech: zt1.iter().zip(&zt0).map(|(a, b)| a - b).collect(),
        });
        counts[ci] += 1;
    }
    out
}
