#!/usr/bin/env bash
# Data-parallel MFD training on one or more nodes with Open MPI: one rank per GPU.
#   launch/train.sh [GPUS_PER_NODE] [-- extra `mfd train` arguments]
# Examples:
#   launch/train.sh 8 -- --config configs/c120.toml --out runs/c120
#   HOSTFILE=hosts.txt launch/train.sh 8 -- --config configs/c120.toml   # several nodes (hostfile: "node slots=8")
# The global batch train.batch_size is split over all ranks (it must be divisible by the world size); with
# dist.batch_stats = "global" (default) N ranks train the same model as one rank at the same global batch.
# GPU runs (--backend cuda) all-reduce gradients over NCCL: dist.comm = "auto" (default) picks it for the CUDA
# backend on more than one rank; --set dist.comm='"mpi"' forces host buffers.
# Preemption: SIGUSR1 to mpirun is forwarded to the ranks, which finish the step, write `last` and exit with
# status 75; rerun the same line with --resume auto to continue. (Open MPI turns a SIGTERM into SIGTERM then
# SIGKILL for the ranks a few seconds later: send SIGUSR1, or set train.checkpoint_every_minutes.)
# Build first: cargo build --release --features mpi
set -euo pipefail
cd "$(dirname "$0")/.."

GPUS_PER_NODE=${1:-1}
shift || true
[[ "${1:-}" == "--" ]] && shift
NODES=1
HOST_ARGS=()
if [[ -n "${HOSTFILE:-}" ]]; then
  NODES=$(grep -cv '^\s*\(#\|$\)' "$HOSTFILE")
  HOST_ARGS=(--hostfile "$HOSTFILE")
fi
NP=$((NODES * GPUS_PER_NODE))
BIN=${MFD_BIN:-target/release/mfd}

# Rayon worker threads per rank: the cores of the node divided among its ranks.
export RAYON_NUM_THREADS=${RAYON_NUM_THREADS:-$(( $(nproc) / GPUS_PER_NODE > 0 ? $(nproc) / GPUS_PER_NODE : 1 ))}
# NCCL (used by the CUDA backend's communicator; ignored by the CPU backend):
export NCCL_DEBUG=${NCCL_DEBUG:-WARN}             # INFO prints the chosen rings/trees and transports once.
export NCCL_IB_HCA=${NCCL_IB_HCA:-}               # InfiniBand adapters to use, e.g. "mlx5" (empty: all).
export NCCL_SOCKET_IFNAME=${NCCL_SOCKET_IFNAME:-^lo,docker}  # bootstrap / TCP fallback interface (not loopback).
export NCCL_ASYNC_ERROR_HANDLING=1                # a failed collective errors instead of hanging.

# mpirun flags:
#   -np NP                          one rank per GPU over all nodes.
#   --map-by ppr:G:node:PE=...      G ranks per node, each with its share of the cores (PE = cores per rank).
#   --bind-to core                  pin each rank to its cores (stable rayon performance).
#   -x VAR                          forward the variables above to every node.
#   --mca btl ^openib               Open MPI's old verbs transport off (UCX or TCP carry the host traffic).
#   --report-bindings               print where each rank runs (check GPU / NUMA affinity once).
# GPU binding: mfd picks GPU (local rank) from MPI's shared-memory split, so rank r of a node uses GPU r; set
# CUDA_VISIBLE_DEVICES only to exclude GPUs.
PE=$(( $(nproc) / GPUS_PER_NODE > 0 ? $(nproc) / GPUS_PER_NODE : 1 ))
ROOT_ARGS=()
[[ $(id -u) == 0 ]] && ROOT_ARGS=(--allow-run-as-root)
exec mpirun "${ROOT_ARGS[@]}" "${HOST_ARGS[@]}" -np "$NP" \
  --map-by "ppr:${GPUS_PER_NODE}:node:PE=${PE}" --bind-to core \
  --mca btl ^openib \
  -x RAYON_NUM_THREADS -x NCCL_DEBUG -x NCCL_IB_HCA -x NCCL_SOCKET_IFNAME -x NCCL_ASYNC_ERROR_HANDLING \
  "$BIN" train "$@"
