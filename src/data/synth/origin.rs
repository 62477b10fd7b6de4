//! Which preset, version and seed a synthesized directory came from, checked before the trainer reuses it.
//!
//! `mfd train` synthesizes and prepares its dataset once and reuses the directories afterwards. When a preset
//! changes (chr20 went from 48 to 72 experiments), a directory written by an older build would otherwise be
//! trained on silently. `truth/params.json` records `preset`, `seed` and (since versions are recorded)
//! `preset_version`; a mismatch with the run config or with this build's preset is an error that says what to do.

use super::presets::preset;
use crate::error::{IoContext, MfdError, Result};
use std::path::Path;

/// What `truth/params.json` says about where a synthesized directory came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Origin {
    pub preset: String,
    pub seed: u64,
    /// `None` for directories written before versions were recorded.
    pub version: Option<u32>,
    pub n_experiments: usize,
}

/// Read the origin of the synthesized directory `synth_dir`; `Ok(None)` when it has no `truth/params.json`
/// (a dataset prepared from the user's own files).
pub fn read_origin(synth_dir: &Path) -> Result<Option<Origin>> {
    let path = synth_dir.join("truth").join("params.json");
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path).at(&path)?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| MfdError::input(&path, Some(e.line() as u64), None, format!("not JSON: {e}")))?;
    let field = |name: &str| MfdError::input(&path, None, Some(name), "missing or of the wrong type");
    let preset = v["preset"].as_str().ok_or_else(|| field("preset"))?.to_string();
    let seed = v["seed"].as_u64().ok_or_else(|| field("seed"))?;
    let version = match &v["preset_version"] {
        serde_json::Value::Null => None,
        x => Some(x.as_u64().and_then(|n| u32::try_from(n).ok()).ok_or_else(|| field("preset_version"))?),
    };
    let n_experiments = v["experiments"].as_array().ok_or_else(|| field("experiments"))?.len();
    Ok(Some(Origin { preset, seed, version, n_experiments }))
}

/// Refuse the synthesized directory `synth_dir` when it did not come from `want_preset` at `want_seed` as this
/// build writes it. A directory without a recorded version is accepted when its experiment count matches the
/// preset's (the one change before versions were recorded), with a note that nothing more can be checked.
pub fn check_origin(synth_dir: &Path, want_preset: &str, want_seed: u64) -> Result<()> {
    let Some(o) = read_origin(synth_dir)? else { return Ok(()) };
    let p = preset(want_preset)?;
    let redo = |what: String| {
        MfdError::config(
            "data.synth_preset",
            format!(
                "{} holds {what}; delete {} (and the prepared dataset beside it) to synthesize it afresh, or point \
                 data.dataset at a new directory",
                synth_dir.display(),
                synth_dir.display()
            ),
        )
    };
    if o.preset != p.name || o.seed != want_seed {
        return Err(redo(format!(
            "the '{}' preset at seed {}, but the config asks for '{}' at seed {want_seed} (data.synth_seed)",
            o.preset, o.seed, p.name
        )));
    }
    match o.version {
        Some(v) if v != p.version => {
            Err(redo(format!("version {v} of the '{}' preset, and this build writes version {}", p.name, p.version)))
        }
        Some(_) => Ok(()),
        None if o.n_experiments != p.n_experiments => Err(redo(format!(
            "an older '{}' preset with {} experiments (written before preset versions were recorded), and this \
             build's has {}",
            p.name, o.n_experiments, p.n_experiments
        ))),
        None => {
            eprintln!(
                "mfd: note: {} was written before preset versions were recorded; its experiment count matches \
                 the '{}' preset, nothing more is checked",
                synth_dir.display(),
                p.name
            );
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_params(dir: &Path, body: &str) {
        std::fs::create_dir_all(dir.join("truth")).unwrap();
        std::fs::write(dir.join("truth/params.json"), body).unwrap();
    }

    fn exps(n: usize) -> String {
        format!("[{}]", vec!["{}"; n].join(","))
    }

    #[test]
    fn current_origin_passes_and_every_mismatch_names_what_differs() {
        let d = tempfile::tempdir().unwrap();
        let v = preset("chr20").unwrap().version;
        let body = |p: &str, seed: u64, ver: &str, n: usize| {
            format!(r#"{{"preset": "{p}", "seed": {seed}, {ver} "experiments": {}}}"#, exps(n))
        };
        write_params(d.path(), &body("chr20", 1, &format!(r#""preset_version": {v},"#), 72));
        check_origin(d.path(), "chr20", 1).unwrap();
        let err = |b: String| {
            write_params(d.path(), &b);
            check_origin(d.path(), "chr20", 1).unwrap_err().to_string()
        };
        let e = err(body("chr20", 2, &format!(r#""preset_version": {v},"#), 72));
        assert!(e.contains("seed 2") && e.contains("data.synth_seed"), "{e}");
        let e = err(body("tiny", 1, r#""preset_version": 4,"#, 72));
        assert!(e.contains("'tiny'"), "{e}");
        let e = err(body("chr20", 1, &format!(r#""preset_version": {},"#, v + 1), 72));
        assert!(e.contains(&format!("version {}", v + 1)) && e.contains("delete"), "{e}");
        // Written before versions were recorded: the v1 chr20 had 48 experiments.
        let e = err(body("chr20", 1, "", 48));
        assert!(e.contains("48 experiments") && e.contains("has 72"), "{e}");
        write_params(d.path(), &body("chr20", 1, "", 72));
        check_origin(d.path(), "chr20", 1).unwrap();
        // A damaged params.json names its file and field; a directory without one is not checked.
        let e = err(r#"{"preset": "chr20", "experiments": []}"#.to_string());
        assert!(e.contains("params.json") && e.contains("seed"), "{e}");
        check_origin(&d.path().join("absent"), "chr20", 1).unwrap();
    }

    #[test]
    fn synthesized_tiny_records_its_version() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("synth");
        super::super::run(&super::super::SynthArgs {
            out: out.clone(),
            seed: 3,
            preset: "tiny".into(),
            contigs: vec!["chr10".into()],
            fasta: None,
        })
        .unwrap();
        let o = read_origin(&out).unwrap().unwrap();
        let p = preset("tiny").unwrap();
        assert_eq!(o, Origin { preset: "tiny".into(), seed: 3, version: Some(p.version), n_experiments: 72 });
        check_origin(&out, "tiny", 3).unwrap();
        assert!(check_origin(&out, "tiny", 1).is_err());
    }
}
