#!/usr/bin/env bash
# The CUDA backend's one prepared check on a GPU machine, from the repository root:
#
#   scripts/gpu_check.sh            build (Release, CUDA, sm_90), run test_cuda, train on cuda against
#                                   cpu (tests/cli/train_cuda.sh), check `membptt grad --device cuda`
#                                   against PyTorch, benchmark membptt against PyTorch's cuDNN LSTM at
#                                   T = 1000 (at 5%, 10% and each checkpointing run's memory), what
#                                   graphs / input blocks / deferred dW buy, T = 4000, one iteration at
#                                   T = 15000 and 100000 within 1 GiB; print a table. Ends within 8 minutes
#                                   (GPU_CHECK_LIMIT seconds, default 470). GPU_CHECK_STAGES picks
#                                   stages (tests,train,oracle,t1000,bidir,ablation,bf16,t4000,long,scan);
#                                   GPU_CHECK_LONG the lengths of `long` (default "15000 100000");
#                                   GPU_CHECK_QUICK=1: tests, T = 1000 and the ablation only. Results go
#                                   to build-gpu/results/, and when OUT is set to $OUT/gpu_results.txt
#                                   and $OUT/gpu_logs.tar.gz (JSON and logs).
#   scripts/gpu_check.sh --prepare-prebuilt
#                                   (on a machine WITHOUT a GPU, with the toolkit and the Debian -dev
#                                   packages) builds build-gpu-prebuilt/: membptt and test_cuda with
#                                   their non-CUDA shared libraries, a fallback the check uses only
#                                   when it cannot build on the GPU machine (no -dev packages, no apt).
#
# On the GPU machine missing Debian -dev packages are installed with apt-get when that works
# (quietly); when it does not, the check falls back to build-gpu-prebuilt/ if it was carried.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
ROOT=$(pwd)

# ---- the total time guard ------------------------------------------------------------------------
LIMIT=${GPU_CHECK_LIMIT:-470}
if [ "${1:-}" != "--prepare-prebuilt" ] && [ -z "${GPU_CHECK_INNER:-}" ]; then
  export GPU_CHECK_INNER=1
  GPU_CHECK_START=$(date +%s)
  export GPU_CHECK_START
  timeout -k 10 "$LIMIT" bash "$0" "$@"
  rc=$?
  [ $rc -eq 124 ] && echo "[gpu_check] stopped by the ${LIMIT} s time guard"
  # $OUT brings back at most 8 files: the results text, and the JSON and logs in one archive.
  if [ -n "${OUT:-}" ] && [ -d build-gpu/results ]; then
    cp build-gpu/results/gpu_results.txt "$OUT/" 2>/dev/null
    tar -C build-gpu/results --exclude=oracle -czf "$OUT/gpu_logs.tar.gz" . 2>/dev/null
  fi
  exit $rc
fi
START=${GPU_CHECK_START:-$(date +%s)}
elapsed() { echo $(($(date +%s) - START)); }
left() { echo $((LIMIT - $(elapsed))); }
upto() {  # seconds a step may take: what is left less $1, at least 10
  local n=$(($(left) - $1))
  [ $n -lt 10 ] && n=10
  echo $n
}

DEPS=(pkg-config libopenblas-dev libcli11-dev nlohmann-json3-dev libfmt-dev libgtest-dev libgmock-dev)

find_nvcc() {
  if ! command -v nvcc >/dev/null 2>&1; then
    for d in /usr/local/cuda/bin /usr/local/cuda-*/bin; do
      [ -x "$d/nvcc" ] && { export PATH="$d:$PATH"; break; }
    done
  fi
  command -v nvcc >/dev/null 2>&1
}

configure_and_build() {  # $1: build dir; the rest: extra CMake arguments
  local dir=$1
  shift
  local cuda_compiler=()
  find_nvcc && cuda_compiler=(-DCMAKE_CUDA_COMPILER="$(command -v nvcc)")
  cmake -S "$ROOT" -B "$dir" -DCMAKE_BUILD_TYPE=Release -DMEMBPTT_BENCH=OFF -DMEMBPTT_CUDA=ON \
    -DCMAKE_CUDA_ARCHITECTURES="${GPU_CHECK_ARCH:-90}" "${cuda_compiler[@]}" "$@" >"$dir/configure.log" 2>&1 || return 1
  grep -q "^CMAKE_CUDA_COMPILER:" "$dir/CMakeCache.txt" && [ -f "$dir/cuda/Makefile" ] ||
    { echo "CMake did not enable the CUDA backend" >>"$dir/configure.log"; return 1; }
  cmake --build "$dir" -j"$(nproc)" --target membptt-cuda test_cuda >"$dir/build.log" 2>&1
}

# ---- --prepare-prebuilt: the fallback, built where the -dev packages are ------------------------------
if [ "${1:-}" = "--prepare-prebuilt" ]; then
  out=build-gpu-prebuilt
  mkdir -p "$out/build"
  echo "building $out (logs in $out/build) ..."
  configure_and_build "$out/build" || { tail -30 "$out/build/configure.log" "$out/build/build.log" 2>/dev/null; exit 1; }
  rm -rf "$out/bin" "$out/lib"
  mkdir -p "$out/bin" "$out/lib"
  cp "$out/build/apps/membptt/membptt-cuda" "$out/bin/membptt" && cp "$out/build/cuda/test_cuda" "$out/bin/"
  # Shared libraries that are not the CUDA toolkit's, the C library's or the compiler runtime's.
  ldd "$out/bin/membptt" "$out/bin/test_cuda" | awk '/=> \//{print $3}' | sort -u | while read -r lib; do
    case "$(basename "$lib")" in
      libc.so* | libm.so* | libdl.so* | librt.so* | libpthread.so* | ld-linux* | libgcc_s.so* | libstdc++.so* | \
        libcud* | libcublas*) ;;
      *) cp -L "$lib" "$out/lib/" ;;
    esac
  done
  rm -rf "$out/build"
  du -sh "$out"
  ls -la "$out/bin" "$out/lib"
  exit 0
fi

# ---- results -------------------------------------------------------------------------------------
RES_DIR=$ROOT/build-gpu/results  # copied to $OUT by the time guard above, when OUT is set
rm -rf "$RES_DIR"
mkdir -p "$RES_DIR"
RES=$RES_DIR/gpu_results.txt
: >"$RES"
say() { echo "[gpu_check $(elapsed)s] $*" | tee -a "$RES"; }
note() { echo "$*" | tee -a "$RES"; }

say "start on $(hostname); limit ${LIMIT} s; results in $RES"
nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used --format=csv,noheader 2>&1 | sed 's/^/  gpu: /' | tee -a "$RES"
find_nvcc && note "  nvcc: $(nvcc --version | tail -2 | head -1)"
note "  cmake: $(cmake --version 2>&1 | head -1); g++: $(g++ --version 2>&1 | head -1)"
note "  python3: $(python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())' 2>&1 | tail -1)"

# ---- build ---------------------------------------------------------------------------------------
BIN="" TEST=""
install_deps() {
  local missing=() p
  for p in "${DEPS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  ((${#missing[@]})) || { say "Debian packages: all there"; return 0; }
  local apt=""
  if [ "$(id -u)" -eq 0 ]; then apt="apt-get"; elif sudo -n true 2>/dev/null; then apt="sudo -n apt-get"; fi
  if [ -z "$apt" ] || ! command -v apt-get >/dev/null 2>&1; then
    say "missing ${missing[*]} and no apt-get to install them"
    return 1
  fi
  say "installing ${missing[*]} (apt-get, quietly)"
  export DEBIAN_FRONTEND=noninteractive
  timeout 120 $apt install -y -qq --no-install-recommends "${missing[@]}" >"$RES_DIR/apt.log" 2>&1 && return 0
  timeout 60 $apt update -qq >>"$RES_DIR/apt.log" 2>&1
  timeout 120 $apt install -y -qq --no-install-recommends "${missing[@]}" >>"$RES_DIR/apt.log" 2>&1 && return 0
  say "apt-get could not install them (see apt.log)"
  tail -3 "$RES_DIR/apt.log" | sed 's/^/  /'
  return 1
}

build_here() {
  say "building build-gpu (Release, CUDA, sm_${GPU_CHECK_ARCH:-90}, $(nproc) jobs) ..."
  local ok=0
  configure_and_build build-gpu && ok=1
  if [ $ok -eq 0 ] && [ ! -f build-gpu/cuda/Makefile ]; then
    # CMake found no usable CUDA compiler: often nvcc refusing a newer g++. Try once more with
    # nvcc's -allow-unsupported-compiler.
    say "CUDA not enabled; configuring again with -allow-unsupported-compiler"
    cp build-gpu/configure.log "$RES_DIR/configure-first.log" 2>/dev/null
    rm -rf build-gpu/CMakeCache.txt build-gpu/CMakeFiles
    configure_and_build build-gpu -DCMAKE_CUDA_FLAGS=-allow-unsupported-compiler && ok=1
  fi
  if [ $ok -eq 1 ]; then
    BIN=$ROOT/build-gpu/apps/membptt/membptt-cuda
    TEST=$ROOT/build-gpu/cuda/test_cuda
    say "built"
    grep -iE "warning" build-gpu/build.log | head -10 | sed 's/^/  | /' | tee -a "$RES"
    return 0
  fi
  say "build failed; the end of the logs:"
  tail -25 build-gpu/configure.log 2>/dev/null | sed 's/^/  | /' | tee -a "$RES"
  tail -25 build-gpu/build.log 2>/dev/null | sed 's/^/  | /' | tee -a "$RES"
  cp build-gpu/configure.log build-gpu/build.log "$RES_DIR/" 2>/dev/null
  return 1
}

mkdir -p build-gpu
install_deps
if ! build_here; then
  if [ -x build-gpu-prebuilt/bin/membptt ] && [ -x build-gpu-prebuilt/bin/test_cuda ]; then
    say "using the carried build-gpu-prebuilt/ instead"
    BIN=$ROOT/build-gpu-prebuilt/bin/membptt
    TEST=$ROOT/build-gpu-prebuilt/bin/test_cuda
    libs=$ROOT/build-gpu-prebuilt/lib
    # cuBLAS / cudart of the matching major version: the toolkit's, or PyTorch's pip packages'.
    for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/local/cuda-*/lib64; do
      [ -d "$d" ] && libs="$libs:$d"
    done
    pylibs=$(python3 -c 'import glob, site, os
ds = set()
for s in site.getsitepackages() + [site.getusersitepackages()]:
    for f in glob.glob(os.path.join(s, "nvidia", "**", "libcublas*.so*"), recursive=True):
        ds.add(os.path.dirname(f))
print(":".join(sorted(ds)))' 2>/dev/null)
    [ -n "$pylibs" ] && libs="$libs:$pylibs"
    export LD_LIBRARY_PATH="$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    ldd "$BIN" | grep "not found" | sed 's/^/  missing: /' | tee -a "$RES"
  else
    say "nothing to run: no build and no build-gpu-prebuilt/"
    exit 1
  fi
fi

# Stages, in this order; GPU_CHECK_STAGES picks some (comma-separated), GPU_CHECK_QUICK=1 the probe.
ALL_STAGES=tests,train,oracle,t1000,bidir,ablation,bf16,t4000,long,scan
STAGES=${GPU_CHECK_STAGES:-$ALL_STAGES}
[ -n "${GPU_CHECK_QUICK:-}" ] && STAGES=tests,t1000,ablation
want() { [[ ",$STAGES," == *",$1,"* ]]; }
say "stages: $STAGES"

# ---- tests ---------------------------------------------------------------------------------------
stage_tests() {
  say "test_cuda ..."
  timeout 150 "$TEST" --gtest_color=no >"$RES_DIR/test_cuda.log" 2>&1
  trc=$?
  grep -E '^\[ +(OK|FAILED|SKIPPED|PASSED|device) +\]|^\[==========\]' "$RES_DIR/test_cuda.log" | tee -a "$RES"
  if [ $trc -ne 0 ]; then
    say "test_cuda exited $trc; first failure messages:"
    grep -n -B2 -A6 -m 12 'Failure' "$RES_DIR/test_cuda.log" | head -80 | sed 's/^/  | /' | tee -a "$RES"
    [ $trc -eq 124 ] && say "(test_cuda timed out)"
  fi
}

# ---- membptt train --device cuda against the CPU -------------------------------------------------
stage_train() {
  say "membptt train --device cuda against --device cpu (tests/cli/train_cuda.sh) ..."
  timeout 120 bash tests/cli/train_cuda.sh "$BIN" . 2>&1 | sed 's/^/  /' | tee -a "$RES"
}

SHAPE=(--batch 64 --input 1024 --hidden 1024 --output 64)
# What each way of issuing the work buys: membptt alone at T = 1000, full and msm 5%, the defaults
# against one change each (tag, flags).
ablation() {
  local tag flags
  for v in "nographs:--no-graphs" "chunk1:--input-chunk 1" "defer8:--defer-steps 8" "defer32:--defer-steps 32"; do
    tag=${v%%:*} flags=${v#*:}
    [ "$(left)" -gt "$1" ] || { say "no time left for the $tag run"; continue; }
    say "membptt at T=1000, $flags ..."
    timeout "$(upto 10)" "$BIN" bench --device cuda --tf32 $flags --cell lstm --length 1000 "${SHAPE[@]}" \
      --policies full,msm --budgets 5% --reps 5 --json "$RES_DIR/membptt_T1000_$tag.json" 2>&1 | sed 's/^/  /' | tee -a "$RES"
  done
}
# A 2-layer bidirectional LSTM (issue 13) on the device: plain BPTT and MSM at 5% and 20%, T = 1000.
stage_bidir() {
  say "membptt bidirectional at T=1000 ..."
  timeout 90 "$BIN" bench --device cuda --tf32 --bidirectional --cell lstm --length 1000 --batch 64 --input 256 \
    --hidden 512 --layers 2 --output 64 --policies full,msm --budgets 5%,20% --reps 3 \
    --json "$RES_DIR/membptt_T1000_bidir.json" 2>&1 | sed 's/^/  /' | tee -a "$RES"
}
# membptt.torch.scan on the GPU (issue 14): DistributedDataParallel with nccl (one process: nccl needs
# a GPU per rank), then the scan benchmark at B = 64, H = 1024 beside plain autograd and checkpointing.
stage_scan() {
  local lib
  for lib in "$ROOT/build-gpu/src/libmembptt.so" "$ROOT/build-gpu-prebuilt/lib/libmembptt.so"; do
    [ -f "$lib" ] && export MEMBPTT_LIBRARY=$lib && break
  done
  say "scan under DDP with nccl (1 process, --check) ..."
  PYTHONPATH=python timeout 60 python3 examples/ddp_train.py --nproc 1 --model scan --device cuda --steps 3 --check \
    2>&1 | sed 's/^/  /' | tee -a "$RES"
  say "scan benchmark on the GPU, T=1000 B=64 H=1024 ..."
  PYTHONPATH=python timeout "$(upto 10)" python3 python/bench_scan.py --device cuda --batch 64 --input 64 --hidden 1024 \
    --reps 3 --json "$RES_DIR/scan_cuda.json" 2>&1 | sed 's/^/  /' | tee -a "$RES"
}
# bf16 GEMMs (float32 storage and sums) beside TF32's, at T = 1000.
stage_bf16() {
  say "membptt at T=1000, --bf16 ..."
  timeout "$(upto 10)" "$BIN" bench --device cuda --bf16 --cell lstm --length 1000 "${SHAPE[@]}" \
    --policies full,msm --budgets 5% --reps 5 --json "$RES_DIR/membptt_T1000_bf16.json" 2>&1 | sed 's/^/  /' | tee -a "$RES"
}

# ---- membptt grad --device cuda against PyTorch (CPU, float64 reference) ------------------------------
stage_oracle() {
  say "membptt grad --device cuda against PyTorch ..."
  timeout 90 python3 - "$BIN" "$RES_DIR/oracle" <<'EOF' 2>&1 | tee -a "$RES"
import argparse, json, os, subprocess, sys
sys.path.insert(0, "python")
try:
    import torch
    import membptt_st as st
    import torch_reference as ref
except Exception as e:  # noqa: BLE001
    print("  skipped: " + repr(e)); sys.exit(0)
torch.set_num_threads(4)
binary, work = sys.argv[1], sys.argv[2]
os.makedirs(work, exist_ok=True)
RTOL = {"float32": 1e-4, "float64": 1e-10}
cases = [("lstm", "float32", "xent", 1), ("lstm", "float64", "xent", 2), ("gru", "float32", "mse_last", 2),
         ("gru", "float64", "xent", 1), ("rnn", "float32", "xent", 2), ("rnn", "float64", "mse_last", 1)]
bad = 0
for i, (cell, dtype, loss, layers) in enumerate(cases):
    m, x = os.path.join(work, f"m{i}.safetensors"), os.path.join(work, f"x{i}.safetensors")
    ref.make(argparse.Namespace(cell=cell, input_size=5, hidden=16, layers=layers, output=6, loss=loss, T=300, batch=4,
                                dtype=dtype, seed=200 + i, model=m, inputs=x, init_state=True))
    theirs, _, their_loss = ref.compute_grad(m, x)
    # 20%: the workspace of the smallest of these nets is itself about 10% of plain BPTT's memory.
    for policy, budget in (("full", "100%"), ("msm", "20%"), ("hsm", "20%")):
        g = os.path.join(work, f"g{i}{policy}.safetensors")
        r = subprocess.run([binary, "grad", "--device", "cuda", "--model", m, "--inputs", x, "--policy", policy,
                            "--memory", budget, "--out", g, "--json"], capture_output=True, text=True)
        if r.returncode:
            print(f"  FAIL {cell} {dtype} {policy}: exit {r.returncode}: {r.stderr.strip()}"); bad += 1; continue
        info = json.loads(r.stdout)
        ours, _ = st.load(g)
        err = max((ours[k].double() - v.double()).abs().max().item() / max(v.double().abs().max().item(), 1e-300)
                  for k, v in theirs.items())
        lerr = abs(info["loss"] - their_loss) / abs(their_loss)
        ok = err <= RTOL[dtype] and lerr <= RTOL[dtype] and info["peak_bytes"] <= info["budget_bytes"]
        bad += not ok
        print(f"  {'ok  ' if ok else 'FAIL'} {cell} {dtype} {loss:8s} L={layers} {policy:4s} forward {info['forward_ops']:3d} "
              f"peak {info['peak_bytes']} <= {info['budget_bytes']:.0f} B grad err {err:.1e} loss err {lerr:.1e}")
print(f"  oracle: {3 * len(cases) - bad} ok, {bad} failed")
EOF
}

# ---- benchmarks ----------------------------------------------------------------------------------
bench_at() {  # $1: T
  local T=$1 tj="$RES_DIR/torch_T$1.json" mj="$RES_DIR/membptt_T$1.json" reps=$2
  say "PyTorch cuDNN LSTM at T=$T ..."
  timeout "$(upto 20)" python3 python/bench_torch_cuda.py --length "$T" "${SHAPE[@]}" --reps "$reps" --warmup 2 \
    --json "$tj" 2>&1 | sed 's/^/  /' | tee -a "$RES"
  local ckpt_budget=""
  if [ -s "$tj" ]; then  # membptt also at the activation memory of each checkpointing run
    ckpt_budget=$(python3 -c "import json; print(''.join(',%d' % r['activation_bytes'] for r in json.load(open('$tj'))['rows'] if r['mode'] != 'plain'))")
  fi
  say "membptt at T=$T (TF32 on) ..."
  timeout "$(upto 15)" "$BIN" bench --device cuda --tf32 --cell lstm --length "$T" "${SHAPE[@]}" --policies "$3" \
    --budgets "5%,10%$ckpt_budget" --reps "$reps" --json "$mj" 2>&1 | sed 's/^/  /' | tee -a "$RES"
}

table() {  # the summary of every JSON written
  python3 - "$RES_DIR" <<'EOF' 2>&1 | tee -a "$RES"
import glob, json, os, re, sys
d = sys.argv[1]
for T in sorted({int(re.search(r"_T(\d+)", f).group(1)) for f in glob.glob(os.path.join(d, "*_T*.json"))}):
    rows, ckpt = [], None
    tp = os.path.join(d, f"torch_T{T}.json")
    if os.path.exists(tp):
        j = json.load(open(tp))
        for r in j["rows"]:
            rows.append((r["name"], 1e3 * r["median_seconds"], r["activation_bytes"] / 2**20, ""))
            if r["mode"] == "ckpt":
                ckpt = rows[-1]
    for tag in ("", "_nographs", "_chunk1", "_defer8", "_defer32", "_bf16", "_long"):
        mp = os.path.join(d, f"membptt_T{T}{tag}.json")
        if not os.path.exists(mp):
            continue
        j = json.load(open(mp))
        for r in j["rows"]:
            name = f"membptt {r['policy']} {r['budget']}" + (" (bf16)" if j.get("bf16") else " (TF32)" if j.get("tf32") else " (fp32)")
            if tag and tag not in ("_long", "_bf16"):
                name += " | " + {"_nographs": "no graphs", "_chunk1": "input GEMM per step",
                                 "_defer8": "dW every 8 steps", "_defer32": "dW every 32 steps"}[tag]
            extra = f"fwd {r['forward_steps']}, {100 * r['held_bytes'] / r['plain_bytes']:.1f}% of plain"
            if "device_taken_bytes" in r:
                extra += f", cudaMemGetInfo {r['device_taken_bytes'] / 2**20:.1f} MiB"
            if "graph_bytes" in r:
                extra += f", graph {r['graph_nodes']} kernels {r['graph_bytes'] / 2**20:.1f} MiB"
            if T > 10000:
                extra += f", {1e6 * r['median_seconds'] / T:.1f} us/step"
            rows.append((name, 1e3 * r["median_seconds"], r["held_bytes"] / 2**20, extra))
    print(f"\nT = {T}, LSTM, batch 64, input 1024, hidden 1024, 64 classes (per-step cross-entropy)")
    print(f"  {'':44s} {'ms/iter':>9s} {'act. MiB':>10s}")
    for n, ms, mib, extra in rows:
        print(f"  {n:44s} {ms:9.1f} {mib:10.1f}  {extra}")
    ours = [r for r in rows if r[0].startswith("membptt") and "TF32" in r[0] and " | " not in r[0]]
    five = [r for r in ours if r[0].startswith("membptt msm 5%")]
    if five:
        print(f"  membptt msm at 5%: {five[0][1]:.1f} ms/iter, {five[0][2]:.1f} MiB (issue's target at T=1000: <= 69 ms)")
    for ck in [r for r in rows if r[0].startswith("torch checkpoint")]:
        fit = [r for r in ours if r[2] <= ck[2]]
        if fit:
            best = min(fit, key=lambda r: r[1])
            print(f"  at no more than {ck[0]}'s {ck[2]:.1f} MiB: {best[0]} {best[1]:.1f} ms/iter "
                  f"vs {ck[1]:.1f} ms/iter ({ck[1] / best[1]:.2f}x faster)")
EOF
}

# Within 1 GiB any length trains (revolve's cost grows like log T); what bounds it here is the
# inputs on the device (256 KiB per step) and the time. One iteration at each of GPU_CHECK_LONG's
# lengths (default 15000: its plan fits a graph; 100000: kernel by kernel, too many steps for one).
stage_long() {
  local T
  for T in ${GPU_CHECK_LONG:-15000 100000}; do
    if [ "$(left)" -gt 60 ]; then
      say "membptt at T=$T within 1 GiB (revolve, TF32 on) ..."
      timeout "$(upto 10)" "$BIN" bench --device cuda --tf32 --cell lstm --length $T "${SHAPE[@]}" --policies revolve \
        --budgets 1GiB --reps 1 --warmup $((T > 65536 ? 0 : 1)) --json "$RES_DIR/membptt_T${T}_long.json" 2>&1 |
        sed 's/^/  /' | tee -a "$RES"
    else
      say "no time left for T=$T ($(left) s left)"
    fi
  done
}

want tests && stage_tests
want train && stage_train
want oracle && stage_oracle
if want t1000; then
  if [ -n "${GPU_CHECK_QUICK:-}" ]; then bench_at 1000 5 full,msm; else bench_at 1000 7 full,msm,hsm; fi
fi
want bidir && stage_bidir
want ablation && ablation 200
want bf16 && stage_bf16
if want t4000; then
  if [ "$(left)" -gt 150 ]; then bench_at 4000 3 full,msm; else say "no time left for T=4000 ($(left) s left)"; fi
fi
want long && stage_long
want scan && stage_scan
table
say "done"
