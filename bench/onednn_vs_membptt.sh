#!/usr/bin/env bash
# oneDNN's LSTM / GRU training primitives (bench/onednn_rnn) beside membptt's plain BPTT
# (`membptt bench --policies full`) on the same shapes and thread counts (issue 18). For each round,
# shape and thread count it runs oneDNN then membptt, one after the other, so that a drift in the
# machine's speed hits both; the table gives the median over rounds of each tool's median seconds.
#
#   bench/onednn_vs_membptt.sh [--build DIR] [--rounds N] [--reps R] [--threads "1 2"] [--output K] [--out DIR] [--smoke]
#
# Shapes (B = 32, T = 1000): LSTM (I, H) = (64, 256), (256, 256) and (1024, 1024) (its weight
# gradients are added in groups of 6 steps there; at T = 100 the plan takes none, see benchmarks.md);
# GRU (64, 256) at T = 1000. --smoke: tiny shapes (B = 4, T = 20; T = 10 for the LSTM (32, 32)),
# one rep, to check the script only.
# --output K >= 2: the classes of membptt's per-step softmax head (default 64, about 5% more work
# than oneDNN's pass, which takes a fixed dL/dh; 2 makes the work nearly the same: the head then
# costs about 0.2% of a step; 1 is refused: a 1-class softmax has zero gradient).
# Needs bench/onednn_rnn, built only where oneDNN is found (scripts/install-deps.sh --bench, then
# cmake --build DIR --target onednn_rnn membptt). Writes every run's JSON and summary.md under --out.
set -euo pipefail
cd "$(dirname "$0")/.."
build=build rounds=1 reps=3 threads="1 2" out=out/bench/onednn smoke=0 classes=64
die() { echo "onednn_vs_membptt.sh: $*" >&2; exit 2; }
value() { [ -n "${2-}" ] || die "$1 needs a value"; }  # missing or empty; ${2:?} would exit 1 with bash's line number
while (($#)); do
  case "$1" in
    --build) value "$@"; build=$2; shift 2 ;;
    --rounds) value "$@"; rounds=$2; shift 2 ;;
    --reps) value "$@"; reps=$2; shift 2 ;;
    --threads) value "$@"; threads=$2; shift 2 ;;
    --output) value "$@"; classes=$2; shift 2 ;;
    --out) value "$@"; out=$2; shift 2 ;;
    --smoke) smoke=1; shift ;;
    -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option '$1'" ;;
  esac
done
least() {  # option value least [why]
  [[ "$2" =~ ^[1-9][0-9]*$ ]] && (($2 >= $3)) || die "bad $1 '$2' (an integer >= $3${4:+: $4})"
}
least --rounds "$rounds" 1
least --reps "$reps" 1
least --output "$classes" 2 "a 1-class softmax has zero gradient"
[ -n "${threads// /}" ] || die "--threads needs a value"
for n in $threads; do
  least --threads "$n" 1
done
onednn=$build/bench/onednn_rnn
membptt=$build/apps/membptt/membptt
for b in "$onednn" "$membptt"; do
  [ -x "$b" ] || { echo "onednn_vs_membptt.sh: no $b (scripts/install-deps.sh --bench; cmake -S . -B $build -DCMAKE_BUILD_TYPE=Release && cmake --build $build --target onednn_rnn membptt)" >&2; exit 1; }
done
batch=32
# cell T I H
shapes=("lstm 1000 64 256" "lstm 1000 256 256" "lstm 1000 1024 1024" "gru 1000 64 256")
if ((smoke)); then
  shapes=("lstm 20 8 16" "lstm 20 16 16" "lstm 10 32 32" "gru 20 8 16")
  batch=4 reps=1
fi
mkdir -p "$out"
rm -f "$out"/onednn-*.json "$out"/membptt-*.json "$out"/membptt-*.txt
for ((r = 1; r <= rounds; r++)); do
  for s in "${shapes[@]}"; do
    read -r cell T I H <<<"$s"
    for n in $threads; do
      tag="$cell-T$T-B$batch-I$I-H$H-t$n-r$r"
      echo "== round $r/$rounds: $cell T=$T B=$batch I=$I H=$H, $n thread(s)"
      OMP_NUM_THREADS=$n "$onednn" --cell "$cell" --length "$T" --batch "$batch" --input "$I" --hidden "$H" \
        --reps "$reps" --json "$out/onednn-$tag.json" | sed 's/^/   oneDNN:  /'
      OPENBLAS_NUM_THREADS=$n OMP_NUM_THREADS=$n "$membptt" bench --policies full --cell "$cell" --length "$T" \
        --batch "$batch" --input "$I" --hidden "$H" --output "$classes" --reps "$reps" --json "$out/membptt-$tag.json" \
        >"$out/membptt-$tag.txt"
      echo "   membptt: done ($out/membptt-$tag.json, its table in .txt)"
    done
  done
done
/usr/bin/python3 - "$out" "$classes" <<'EOF'
import glob, json, os, statistics, sys
out, classes = sys.argv[1], int(sys.argv[2])
runs = {}
for path in sorted(glob.glob(os.path.join(out, "*.json"))):
    name = os.path.basename(path)[:-5]
    tool, rest = name.split("-", 1)
    if tool not in ("onednn", "membptt"):
        continue
    key = rest.rsplit("-r", 1)[0]  # cell-T-B-I-H-threads, without the round
    with open(path) as f:
        j = json.load(f)
    runs.setdefault(key, {}).setdefault(tool, []).append(j)
lines = [
    "oneDNN %s RNN training primitives (forward_training + backward; GRU = lbr_gru, PyTorch's GRU) beside"
    " membptt bench --policies full (plain BPTT)." % next(
        (r["onednn"][0]["onednn_version"] for r in runs.values() if "onednn" in r), "?"),
    "Seconds: one forward + backward pass over T steps, median over rounds of each run's median.",
    "GFLOP/s for both: GEMM FLOPs only, 6*T*B*G*H*(I+H) (forward 2*T*B*G*H*(I+H), backward twice that),"
    " G = 4 (LSTM) or 3 (GRU).",
    "membptt's pass also includes its %d-class softmax head per step (%s, not counted in"
    " the FLOPs); oneDNN's gets a fixed random dL/dh instead." % (
        classes, "about 5% extra work at 64 classes" if classes >= 32 else "a negligible extra"),
    "ratio = oneDNN s / membptt s (> 1: membptt faster). oneDNN MiB: its workspace (what forward keeps for"
    " backward; dst_layer and scratchpad not included); membptt MiB: held_bytes of its plain-BPTT row.",
    "",
    "| cell | T | B | I | H | threads | oneDNN s | membptt s | ratio | oneDNN GFLOP/s | membptt GFLOP/s"
    " | oneDNN workspace MiB | membptt held MiB | rounds |",
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
]
def order(k):
    c, T, B, I, H, t = k.split("-")
    return (c != "lstm", int(I[1:]) * int(H[1:]), int(t[1:]))
ok = True
for key in sorted(runs, key=order):
    r = runs[key]
    if "onednn" not in r or "membptt" not in r:
        continue
    d = r["onednn"][0]
    m0 = r["membptt"][0]
    row = m0["rows"][0]
    if row["policy"] != "full":
        sys.exit("onednn_vs_membptt.sh: membptt's first row is %s, not full" % row["policy"])
    for x in r["onednn"]:
        ok = ok and x["grads_ok"]
    ds = statistics.median(x["median_s"] for x in r["onednn"])
    ms = statistics.median(x["rows"][0]["median_seconds"] for x in r["membptt"])
    flops = d["flops"]
    threads = key.rsplit("-t", 1)[1]
    lines.append("| %s | %d | %d | %d | %d | %s | %.4g | %.4g | %.2f | %.1f | %.1f | %.2f | %.2f | %d |" % (
        d["cell"], d["length"], d["batch"], d["input"], d["hidden"], threads, ds, ms, ds / ms,
        flops / ds * 1e-9, flops / ms * 1e-9, d["workspace_bytes"] / 2**20, row["held_bytes"] / 2**20,
        len(r["onednn"])))
text = "\n".join(lines) + "\n"
print()
print(text, end="")
tmp = os.path.join(out, "summary.md.tmp")
with open(tmp, "w") as f:
    f.write(text)
os.replace(tmp, os.path.join(out, "summary.md"))
print("(also in %s)" % os.path.join(out, "summary.md"))
if not ok:
    sys.exit("onednn_vs_membptt.sh: a oneDNN run's gradients were zero or not finite")
EOF
