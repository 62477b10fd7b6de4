//! The GPU-resident dataset slice: genome base codes, the tile table and the label bitsets of a set of tiles (e.g.
//! the training split) live on the device; per step the host sends only the batch's tile indices (B u64) and the
//! window encoding (kernels/window_encode.cu) writes the stem's u8 tokens (B, T) and the label rows (B, row_bytes)
//! directly on the GPU, with the exact semantics of `data::window::encode_batch_into` and `gather_labels`.
//!
//! Key decision: only the listed tiles' records and labels are uploaded (the genome is uploaded whole: windows
//! reach outside tiles), so a split's label bits cost |split| x row_bytes of device memory, not the whole dataset's.

use super::launch::{check, grid1d, launch};
use super::{CudaBackend, DevBuf};
use crate::data::dataset::Dataset;
use crate::data::sampler::BatchPlan;
use crate::{MfdError, Result};

/// Device copies of the genome and of the records and labels of `tiles` (ascending global indices).
pub struct GpuGenome {
    codes: DevBuf<u8>,
    contig_offset: DevBuf<u64>,
    contig_len: DevBuf<u64>,
    tile_contig: DevBuf<u32>,
    tile_start: DevBuf<u32>,
    labels: DevBuf<u8>,
    /// Global tile index of each device slot, ascending (slot lookup by binary search).
    tiles: Vec<u64>,
    row_bytes: usize,
    tile_size: u64,
    /// The last batch's device slots (B,), reused while B stays the same: no allocation per step.
    slots: Option<DevBuf<u64>>,
}

impl GpuGenome {
    /// Upload the genome and the records and label rows of `tiles` (strictly ascending, e.g.
    /// `ds.split_indices(SPLIT_TRAIN)`).
    pub fn new(be: &CudaBackend, ds: &Dataset, tiles: &[u64]) -> Result<GpuGenome> {
        if let Some(w) = tiles.windows(2).find(|w| w[0] >= w[1]) {
            return Err(MfdError::other(format!("GpuGenome: tile indices not strictly ascending at {}", w[1])));
        }
        if let Some(&g) = tiles.last().filter(|&&g| g >= ds.num_tiles()) {
            return Err(MfdError::Shape { op: "GpuGenome", msg: format!("tile {g} of {} tiles", ds.num_tiles()) });
        }
        let contigs = &ds.manifest().contigs;
        let offsets: Vec<u64> = contigs.iter().map(|c| c.offset).collect();
        let lengths: Vec<u64> = contigs.iter().map(|c| c.length).collect();
        let (mut tc, mut ts) = (Vec::with_capacity(tiles.len()), Vec::with_capacity(tiles.len()));
        let row_bytes = ds.label_row_bytes();
        let mut labels = Vec::with_capacity(tiles.len() * row_bytes);
        for &g in tiles {
            let rec = ds.tile(g);
            tc.push(rec.contig);
            ts.push(rec.start);
            labels.extend_from_slice(ds.label_row(g));
        }
        Ok(GpuGenome {
            codes: be.dev_copy(ds.genome())?,
            contig_offset: be.dev_copy(&offsets)?,
            contig_len: be.dev_copy(&lengths)?,
            tile_contig: be.dev_copy(&tc)?,
            tile_start: be.dev_copy(&ts)?,
            labels: be.dev_copy(&labels)?,
            tiles: tiles.to_vec(),
            row_bytes,
            tile_size: ds.tile_size(),
            slots: None,
        })
    }

    /// Device slots of the plan's global tile indices; an index not uploaded is an error naming it.
    fn slots(&self, plan: &BatchPlan) -> Result<Vec<u64>> {
        plan.indices
            .iter()
            .map(|g| {
                self.tiles.binary_search(g).map(|s| s as u64).map_err(|_| MfdError::Shape {
                    op: "window_encode",
                    msg: format!("tile {g} is not resident on the GPU"),
                })
            })
            .collect()
    }

    /// Tokens (B, T) and label rows (B, row_bytes) of `plan` (its shift and RC applied to every window).
    pub fn encode(
        &mut self,
        be: &CudaBackend,
        plan: &BatchPlan,
        t: usize,
        tokens: &mut DevBuf<u8>,
        labels: &mut DevBuf<u8>,
    ) -> Result<()> {
        let nb = plan.indices.len();
        if t == 0 {
            return Err(MfdError::Shape { op: "window_encode", msg: "T must be positive".into() });
        }
        check("window_encode", "tokens", tokens.len(), nb * t)?;
        check("window_encode", "labels", labels.len(), nb * self.row_bytes)?;
        if nb == 0 {
            return Ok(());
        }
        let host_slots = self.slots(plan)?;
        let idx = match self.slots.take() {
            Some(mut buf) if buf.len() == nb => {
                be.put(&mut buf, &host_slots)?;
                buf
            }
            _ => be.dev_copy(&host_slots)?,
        };
        let idx = &*self.slots.insert(idx);
        let [batch, tt, tile, shift, rb] =
            [nb as i64, t as i64, self.tile_size as i64, plan.shift as i64, self.row_bytes as i64];
        let rc = plan.rc as i32;
        launch!(
            be,
            "window_encode_u8",
            grid1d(nb * t),
            &self.codes.data,
            &self.contig_offset.data,
            &self.contig_len.data,
            &self.tile_contig.data,
            &self.tile_start.data,
            &idx.data,
            &batch,
            &tt,
            &tile,
            &shift,
            &rc,
            &mut tokens.data
        )?;
        if self.row_bytes > 0 {
            launch!(
                be,
                "label_gather_u8",
                grid1d(nb * self.row_bytes),
                &self.labels.data,
                &idx.data,
                &batch,
                &rb,
                &mut labels.data
            )?;
        }
        Ok(())
    }
}
