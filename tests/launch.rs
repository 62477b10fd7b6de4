//! Launch detection through the binary: a multi-rank launch mfd cannot join (torchrun-style RANK/WORLD_SIZE,
//! `srun` without PMIx) is refused with an error naming the fix, before anything is written, instead of running
//! N independent one-rank trainings into one run directory.

use std::process::Command;

#[test]
fn unjoinable_multi_rank_launches_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let cases: [(&[(&str, &str)], &str); 2] = [
        (&[("WORLD_SIZE", "2"), ("RANK", "1"), ("LOCAL_RANK", "1")], "torchrun"),
        (&[("SLURM_STEP_NUM_TASKS", "2"), ("SLURM_PROCID", "0"), ("SLURM_LOCALID", "0")], "srun"),
    ];
    for (vars, who) in cases {
        let mut c = Command::new(env!("CARGO_BIN_EXE_mfd"));
        c.args(["train", "--out"]).arg(&run);
        for k in ["OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK", "PMI_SIZE", "PMI_RANK", "PMIX_RANK", "PMIX_SIZE"] {
            c.env_remove(k);
        }
        c.envs(vars.iter().copied());
        let out = c.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{who}: {err}");
        assert!(err.contains("started 2 ranks") && err.contains(who) && !err.contains("panicked"), "{who}: {err}");
        assert!(!run.exists(), "{who}: the refused launch wrote {}", run.display());
    }
}
