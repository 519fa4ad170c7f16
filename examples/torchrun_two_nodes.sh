#!/usr/bin/env bash
# Multi-node training with torchrun: run this script on each of NNODES machines, NODE_RANK 0 .. NNODES-1, with
# MASTER_ADDR the address of node 0 (reachable from the others) and the data and run folder on a shared file
# system. Lightning reads torchrun's environment; only global rank 0 writes the run folder.
#   MASTER_ADDR=10.0.0.1 NODE_RANK=0 bash examples/torchrun_two_nodes.sh recipes/pneumonia_lite.yaml runs/lite0_ddp
#   MASTER_ADDR=10.0.0.1 NODE_RANK=1 bash examples/torchrun_two_nodes.sh recipes/pneumonia_lite.yaml runs/lite0_ddp
# On one machine, for a try-out: NNODES=2 GPUS_PER_NODE=1 with MASTER_ADDR=127.0.0.1 in two terminals (what
# tests/test_distributed.py does on the CPU).
set -euo pipefail
RECIPE=${1:?recipe YAML}
OUT=${2:?run folder on a shared file system}
NNODES=${NNODES:-2}
GPUS_PER_NODE=${GPUS_PER_NODE:-$(nvidia-smi -L 2>/dev/null | wc -l || echo 1)}
exec torchrun --nnodes "$NNODES" --nproc-per-node "$GPUS_PER_NODE" --node-rank "${NODE_RANK:?0 .. NNODES-1}" \
    --master-addr "${MASTER_ADDR:?address of node 0}" --master-port "${MASTER_PORT:-29500}" \
    -m medkd.cli train "$RECIPE" --devices "$GPUS_PER_NODE" --num-nodes "$NNODES" --out "$OUT" --no-progress
