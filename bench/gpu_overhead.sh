#!/usr/bin/env bash
# Issue 5's overhead target on a lent GPU machine: bench/overhead.py in one process,
# the arms taking turns every step, with the per-step operator audit and torch's
# CUDA sync debug mode. Needs .gpuwheels/ and .gpudata/midi, as bench/gpu_check.sh
# (carry both). About 2 minutes on an H100/H200; figures in $OUT/overhead.{txt,json}.
set -uo pipefail
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --find-links .gpuwheels pydantic miditok symusic orjson 2>&1 | tail -2
python3 -m pip install -q --no-index --no-deps --find-links .gpuwheels tensorboard absl-py protobuf 2>&1 | tail -2
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
PODIUM_CACHE_DIR=$OUT/cache python3 bench/overhead.py --device cuda --seconds ${SECONDS_MEASURED:-60} \
  --set data.source=midi_dir --set data.path=$PWD/.gpudata/midi --set data.max_pieces=40 \
  --json $OUT/overhead.json 2>&1 | tee $OUT/overhead.txt
