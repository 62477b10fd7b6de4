//! Model geometry from the config: the trunk's channel schedule (float64 truncation exactly as the reference,
//! mfd-spec.md 2.3), the layer list with lengths, and parameter counts. No tensors here.

use crate::config::ModelConfig;

/// Output channels after tower stage l = 0..=layers: `int((C//2) * m^l)` with `m = (C / (C//2))^(1/layers)`, in
/// IEEE double as Python computes it (15 * m^6 = 30.000000000000007 for C = 30, so the last stage lands on C).
pub fn channel_schedule(c: usize, layers: usize) -> Vec<usize> {
    let c0 = c / 2;
    let m = (c as f64 / c0 as f64).powf(1.0 / layers as f64);
    // powf, not powi: Python evaluates `m ** l` with C pow(), and repeated multiplication can round differently.
    (0..=layers).map(|l| (c0 as f64 * m.powf(l as f64)) as usize).collect()
}

/// Dilation of dilated block l: floor(2 * D^l).
pub fn dilation(l: usize, growth: f64) -> usize {
    (2.0 * growth.powi(l as i32)).floor() as usize
}

/// Resolved trunk geometry.
#[derive(Debug, Clone, PartialEq)]
pub struct TrunkSpec {
    /// Trunk width C (latent 2C).
    pub c: usize,
    /// Input tokens T.
    pub t: usize,
    /// Channels after the stem and after each tower stage: c_0 .. c_layers (c_layers = C).
    pub channels: Vec<usize>,
    /// Dilations of the dilated residual blocks.
    pub dilations: Vec<usize>,
    /// Bins cropped per side.
    pub crop: usize,
    /// Length after the tower (T / 2^(layers+1)).
    pub l_tower: usize,
}

pub const STEM_K: usize = 15;
pub const TOWER_K: usize = 5;
pub const DILATED_K: usize = 3;

impl TrunkSpec {
    pub fn new(m: &ModelConfig) -> Self {
        let channels = channel_schedule(m.c, m.tower_layers);
        let dilations = (0..m.dilated_layers).map(|l| dilation(l, m.dilation_growth)).collect();
        let l_tower = m.seq_len >> (m.tower_layers + 1);
        TrunkSpec { c: m.c, t: m.seq_len, channels, dilations, crop: m.crop, l_tower }
    }

    pub fn tower_layers(&self) -> usize {
        self.channels.len() - 1
    }

    /// Sequence length entering tower stage l (after the stem pool and l tower pools).
    pub fn tower_len(&self, l: usize) -> usize {
        self.t >> (l + 1)
    }

    /// Multiply-accumulates per sequence of the trunk forward (conv layers only), for FLOP accounting.
    pub fn macs_per_sequence(&self) -> u64 {
        let c0 = self.channels[0] as u64;
        let t = self.t as u64;
        let mut macs = t * 16 * c0 * STEM_K as u64 + t * c0 * c0;
        for l in 0..self.tower_layers() {
            let (ci, co) = (self.channels[l] as u64, self.channels[l + 1] as u64);
            let len = self.tower_len(l) as u64;
            macs += len * ci * co * TOWER_K as u64 + len * co * co;
        }
        let c = self.c as u64;
        let lt = self.l_tower as u64;
        macs += self.dilations.len() as u64 * (lt * c * c * DILATED_K as u64 + lt * c * c);
        macs += (self.l_tower - 2 * self.crop) as u64 * c * 2 * c;
        macs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_schedules_match_the_reference() {
        assert_eq!(channel_schedule(30, 6), vec![15, 16, 18, 21, 23, 26, 30]);
        assert_eq!(channel_schedule(60, 6), vec![30, 33, 37, 42, 47, 53, 60]);
        assert_eq!(channel_schedule(120, 6), vec![60, 67, 75, 84, 95, 106, 120]);
        assert_eq!(channel_schedule(768, 6), vec![384, 431, 483, 543, 609, 684, 768]);
    }

    #[test]
    fn dilations_and_macs() {
        assert_eq!((0..5).map(|l| dilation(l, 1.5)).collect::<Vec<_>>(), vec![2, 3, 4, 6, 10]);
        let m = ModelConfig {
            c: 30,
            seq_len: 2176,
            crop: 8,
            tower_layers: 6,
            dilated_layers: 2,
            dilation_growth: 1.5,
            metadata: true,
        };
        let s = TrunkSpec::new(&m);
        assert_eq!(s.l_tower, 17);
        // mfd-spec.md 2.5: 12,438,048 MACs per sequence at C = 30, T = 2176; C = 120: 108,616,912.
        assert_eq!(s.macs_per_sequence(), 12_438_048);
        let m120 = ModelConfig { c: 120, ..m };
        assert_eq!(TrunkSpec::new(&m120).macs_per_sequence(), 108_616_912);
    }
}
