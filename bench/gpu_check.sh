#!/usr/bin/env bash
# CUDA checks on a lent GPU machine (see README "GPU checks"): runs the engine's
# CUDA paths on the smoke config and prints figures. Expects the wheels the
# device image lacks in .gpuwheels/ and the chorales as MIDI in .gpudata/midi
# (the device cannot run music21's export, so it trains on the exported files).
set -uo pipefail
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --find-links .gpuwheels pydantic miditok symusic orjson 2>&1 | tail -2
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__, 'bf16', torch.cuda.is_bf16_supported())"
export PODIUM_CACHE_DIR=$OUT/cache
DATA=(--set data.source=midi_dir --set data.path=$PWD/.gpudata/midi --set data.max_pieces=40)
summary() {
  python3 - "$1" <<'PY'
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1] + "/events.jsonl")]
start = next(e for e in ev if e["type"] == "run_start")
m = [e for e in ev if e["type"] == "metrics"]
end = ev[-1]
print(f"  end={end['type']}:{end.get('reason')} precision={start['env']['precision']} ({start['env']['precision_reason']}) "
      f"micro={start['micro_batch_size']} ({start['micro_batch_reason']})")
print(f"  loss {m[0]['loss']:.3f} -> {m[-1]['loss']:.3f}; tokens/s last {m[-1]['tokens_per_s']:.0f}; "
      f"skipped steps {sum(x['skipped_steps'] for x in m)}")
PY
}
echo "== 1. bf16 auto on CUDA, smoke model"
python3 main.py run -c resources/smoke.yaml -r $OUT/auto --no-progress "${DATA[@]}" --set run.precision=auto --set run.max_steps=60 >/dev/null 2>&1; summary $OUT/auto
echo "== 2. fp16 + GradScaler with an injected inf at step 3"
python3 main.py run -c resources/smoke.yaml -r $OUT/fp16 --no-progress "${DATA[@]}" --set run.precision=fp16 --set run.max_steps=10 --set run.log_interval=5 --set 'debug.inf_grad_at_steps=[3]' >/dev/null 2>&1; summary $OUT/fp16
echo "== 3. micro-batch auto (GPU probe) on the default model"
python3 main.py run -r $OUT/automicro --no-progress "${DATA[@]}" --set batch.micro_batch_size=auto --set batch.global_batch_size=64 --set run.max_steps=40 --set checkpoint.interval=0 >/dev/null 2>&1; summary $OUT/automicro
echo "== 4. default model: fp32 vs bf16 throughput (same run length)"
for p in fp32 bf16; do
  python3 main.py run -r $OUT/speed-$p --no-progress "${DATA[@]}" --set run.precision=$p --set run.max_steps=60 --set run.eval_interval=1000 --set checkpoint.interval=0 >/dev/null 2>&1; echo " $p:"; summary $OUT/speed-$p
done
echo "== 5. activation checkpointing on the default model (bf16)"
python3 main.py run -r $OUT/ckpt --no-progress "${DATA[@]}" --set model.activation_checkpointing=true --set run.max_steps=60 --set run.eval_interval=1000 --set checkpoint.interval=0 >/dev/null 2>&1; summary $OUT/ckpt
echo "== 6. sample from the bf16 run's checkpoint on CUDA"
python3 main.py sample $OUT/auto/checkpoints/step-0000060 --out $OUT/sample.mid 2>&1 | tail -1
echo "== 7. monitoring on CUDA: NVML/torch memory in system events, samples, NaN rollback"
python3 main.py run -c resources/smoke.yaml -r $OUT/monitor --no-progress "${DATA[@]}" --set monitor.system_interval_s=1 --set run.max_steps=60 --set 'debug.nan_loss_at_steps=[40]' >/dev/null 2>&1
python3 - $OUT/monitor <<'PY'
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1] + "/events.jsonl")]
system = [e for e in ev if e["type"] == "system"]
last = system[-1]
print(f"  system events {len(system)}; rank 0 gpu_mem alloc {last['ranks'][0].get('gpu_mem_alloc_mb', 0):.1f} MB "
      f"reserved {last['ranks'][0].get('gpu_mem_reserved_mb', 0):.1f} MB peak {last['ranks'][0].get('gpu_mem_peak_mb', 0):.1f} MB; "
      f"NVML gpus {[(g.get('util'), g.get('mem_used_mb'), g.get('temp_c'), g.get('power_w')) for g in last.get('gpus', [])]}")
# The rank's own GPU found in NVML (by UUID): its used memory must reach the per-rank lists.
print(f"  per-rank NVML used {last.get('gpu_mem_used_mb')} MB of {last.get('gpu_mem_total_mb')} MB; "
      f"peak since last log step {last.get('gpu_mem_peak_mb')} MB")
m = [e for e in ev if e["type"] == "metrics"]
print(f"  rank_work_times (CUDA events) {[[round(t * 1e3, 2) for t in x['rank_work_times']] for x in m[:3]]} ms/step, "
      f"step_time {[round(x['step_time'] * 1e3, 2) for x in m[:3]]} ms")
print(f"  anomalies {[(e['kind'], e['step']) for e in ev if e['type'] == 'anomaly' and 'action_taken' not in e]}")
samples = [e for e in ev if e["type"] == "sample"]
print(f"  sample rounds {len(samples)}, quality {[round(s['quality_score'], 3) for s in samples]}, seconds {[s['seconds'] for s in samples]}")
taken = [e["action_taken"] for e in ev if e["type"] == "anomaly" and "action_taken" in e]
print(f"  recovery {taken}; end {ev[-1].get('reason')} at {ev[-1]['step']}")
PY
for r in auto fp16 automicro monitor; do tail -3 $OUT/$r/engine.log | sed "s/^/  [$r log] /"; done
