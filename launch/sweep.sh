#!/usr/bin/env bash
# A lambda_indep sweep under one mpirun (issue 6): the world is split into groups of RANKS_PER_POINT ranks, one
# data-parallel group per sweep point; with fewer groups than points, each group runs its points in turn.
#   launch/sweep.sh [NP] [-- extra `mfd sweep` arguments]
# Examples:
#   launch/sweep.sh 5                                   # the Table-1 sweep, 5 points on 5 ranks (1 rank each)
#   RANKS_PER_POINT=2 launch/sweep.sh 10                # 2 ranks per point (each point data-parallel)
#   launch/sweep.sh 1 -- --set train.backend=\"cuda\"    # one rank runs every point in turn, on a GPU
#   SWEEP=configs/sweep_tiny.toml launch/sweep.sh 2 -- --out /tmp/s --set data.dataset=\"/tmp/s/data/dataset\"
# Rerunning the same command resumes the sweep (finished points are skipped, interrupted ones resume from their
# checkpoint). Outputs: <out>/results.tsv, results.md (with Table 1), sweep.svg, points/<name>/ (run dirs).
# Build first: cargo build --release --features mpi
set -euo pipefail
cd "$(dirname "$0")/.."

NP=${1:-1}                                        # total MPI ranks
shift || true
[[ "${1:-}" == "--" ]] && shift
SWEEP=${SWEEP:-configs/sweep_lambda.toml}         # the sweep config
RANKS_PER_POINT=${RANKS_PER_POINT:-}              # empty: the sweep config's ranks_per_point
BIN=${MFD_BIN:-target/release/mfd}
EXTRA=()
[[ -n "$RANKS_PER_POINT" ]] && EXTRA=(--ranks-per-point "$RANKS_PER_POINT")

# Rayon worker threads per rank: this node's cores divided among its ranks (set it yourself on several nodes).
export RAYON_NUM_THREADS=${RAYON_NUM_THREADS:-$(( $(nproc) / NP > 0 ? $(nproc) / NP : 1 ))}

# mpirun flags:
#   -np NP              ranks in all; with CUDA, one rank per GPU (a rank uses GPU <local rank>).
#   --oversubscribe     allow more ranks than cores (CPU sweeps on a laptop).
#   --allow-run-as-root only when running as root (containers).
#   -x RAYON_NUM_THREADS  forward the thread count to every rank.
ROOT_ARGS=()
[[ $(id -u) == 0 ]] && ROOT_ARGS=(--allow-run-as-root)
exec mpirun "${ROOT_ARGS[@]}" --oversubscribe -np "$NP" -x RAYON_NUM_THREADS \
  "$BIN" sweep --config "$SWEEP" "${EXTRA[@]}" "$@"
