#!/usr/bin/env bash
# membptt grad on what users hand it: files that are not safetensors (a torch.save zip, gzip, JSON,
# text, an empty file) as --model or --inputs; PyTorch state dicts under their own names with no
# membptt metadata (--loss); BF16 models and inputs. Without PyTorch the last part (a real
# torch.save file, converted, against torch's own gradients) is skipped, saying so.
# Usage: grad_foreign.sh MEMBPTT_BINARY REPO_ROOT
set -euo pipefail
bin=$1 root=$2
source "$(dirname "$0")/lib.bash"  # tmp, fail, expect_error
py=/usr/bin/python3
[ -x "$py" ] || py=python3

# A model and inputs in membptt's format (init writes the model; the inputs by the stdlib helper below).
"$bin" init --cell lstm --input-size 3 --hidden 5 --layers 2 --output 4 --loss xent --seed 7 --out "$tmp/m.safetensors" >/dev/null

# A safetensors reader/writer with the standard library only (no torch needed).
cat >"$tmp/st.py" <<'EOF'
import json, struct, sys

def load(path):
    data = open(path, "rb").read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", None)
    return {k: (v["dtype"], v["shape"], data[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]])
            for k, v in header.items()}, meta

def save(path, tensors, meta):
    header, blobs, off = {}, [], 0
    if meta is not None or "--null-metadata" in sys.argv:
        header["__metadata__"] = meta
    for k in sorted(tensors, key=lambda k: -{"F64": 8, "I64": 8, "F32": 4}.get(tensors[k][0], 2)):
        dtype, shape, raw = tensors[k]
        header[k] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    open(path, "wb").write(struct.pack("<Q", len(text)) + text + b"".join(blobs))

def bf16(raw):  # F32 bytes -> BF16 bytes (truncation) and the F32 bytes of the same values
    n = len(raw) // 4
    words = struct.unpack(f"<{n}I", raw)
    return struct.pack(f"<{n}H", *[w >> 16 for w in words]), struct.pack(f"<{n}I", *[w & 0xFFFF0000 for w in words])

cmd = sys.argv[1]
if cmd == "inputs":  # T=6, B=2, I=3, classes in [0, 4); DTYPE F32 or BF16
    out, dtype = sys.argv[2], sys.argv[3]
    xs = [((i * 7) % 11 - 5) * 0.125 for i in range(6 * 2 * 3)]  # exact in BF16
    raw = struct.pack(f"<{len(xs)}f", *xs)
    if dtype == "BF16":
        raw = bf16(raw)[0]
    tgt = struct.pack("<12q", *[(i * 3) % 4 for i in range(12)])
    save(out, {"input": (dtype, [6, 2, 3], raw), "target": ("I64", [6, 2], tgt)}, None)
elif cmd == "torchify":  # SRC DST RNN_PREFIX HEAD_PREFIX META_JSON(or 'none') [bf16] [values-only]
    src, dst, rp, hp, meta = sys.argv[2:7]
    tensors, _ = load(src)
    out = {}
    flags = sys.argv[7:]
    for k, (dtype, shape, raw) in tensors.items():
        name = rp + k[4:] if k.startswith("rnn.") else hp + k[5:]
        if "bf16" in flags:
            b, f = bf16(raw)
            out[name] = ("F32", shape, f) if "values-only" in flags else ("BF16", shape, b)
        else:
            out[name] = (dtype, shape, raw)
    save(dst, out, None if meta == "none" else json.loads(meta))
elif cmd == "poison":  # SRC DST NAME VALUE: the F32 tensor NAME's element 3 set to VALUE (nan, inf)
    src, dst, name, value = sys.argv[2:6]
    tensors, meta = load(src)
    dtype, shape, raw = tensors[name]
    tensors[name] = (dtype, shape, raw[:12] + struct.pack("<f", float(value)) + raw[16:])
    save(dst, tensors, meta)
elif cmd == "names":  # the tensor names and dtypes of a file
    tensors, meta = load(sys.argv[2])
    print(" ".join(f"{k}:{tensors[k][0]}" for k in sorted(tensors)))
elif cmd == "same":  # A B [RENAME]: A's tensors equal B's byte for byte (B's names mapped back to A's)
    a, _ = load(sys.argv[2])
    b, _ = load(sys.argv[3])
    rp, hp = sys.argv[4], sys.argv[5]
    b = {("rnn." + k[len(rp):] if k.startswith(rp) and "_l" in k else "head." + k[len(hp):]): v for k, v in b.items()}
    if set(a) != set(b):
        sys.exit(f"different tensors: {sorted(a)} vs {sorted(b)}")
    for k in a:
        if a[k] != b[k]:
            sys.exit(f"tensor {k} differs")
    if all(set(v[2]) <= {0} for v in a.values()):
        sys.exit("all gradients are zero")
EOF
st() { "$py" "$tmp/st.py" "$@"; }
st inputs "$tmp/x.safetensors" F32
st inputs "$tmp/x-bf16.safetensors" BF16

# 1. Foreign files as --model and --inputs: say what they are, and that safetensors was expected.
printf 'PK\003\004\024\000\000\000\010\000archive/data.pkl' >"$tmp/model.pt"
printf '{"format": "pt"}\n' | gzip -c >"$tmp/model.safetensors.gz"
printf '{"hidden_size": 64, "num_layers": 2}\n' >"$tmp/config.json"
printf 'weights are elsewhere\n' >"$tmp/README.txt"
: >"$tmp/empty.safetensors"
expect_error "model.pt: this is a zip archive, which is what torch.save writes" "$bin" grad --model "$tmp/model.pt" --inputs "$tmp/x.safetensors"
grep -qF "python3 python/membptt_st.py convert $tmp/model.pt model.safetensors" "$tmp/err" || fail "no conversion hint"
expect_error "this is gzip-compressed data, but a safetensors file was expected" "$bin" grad --model "$tmp/model.safetensors.gz" --inputs "$tmp/x.safetensors"
expect_error "this is a JSON document (it begins '{\"hidden_size\": 64" "$bin" grad --model "$tmp/config.json" --inputs "$tmp/x.safetensors"
expect_error "this is a text file (it begins 'weights are elsewhere')" "$bin" grad --model "$tmp/README.txt" --inputs "$tmp/x.safetensors"
expect_error "the file is empty (0 bytes), but a safetensors file was expected" "$bin" grad --model "$tmp/empty.safetensors" --inputs "$tmp/x.safetensors"
cp "$tmp/model.pt" "$tmp/x.pt"
expect_error "x.pt: this is a zip archive" "$bin" grad --model "$tmp/m.safetensors" --inputs "$tmp/x.pt"

# 2. The same model as a PyTorch state dict: other prefixes, no membptt metadata.
"$bin" grad --model "$tmp/m.safetensors" --inputs "$tmp/x.safetensors" --out "$tmp/g.safetensors" >/dev/null
st torchify "$tmp/m.safetensors" "$tmp/pt.safetensors" "lstm." "fc." '{"format": "pt"}'
expect_error "the loss cannot be read from the tensors and the file has no metadata 'loss': pass --loss xent" \
  "$bin" grad --model "$tmp/pt.safetensors" --inputs "$tmp/x.safetensors"
"$bin" grad --model "$tmp/pt.safetensors" --inputs "$tmp/x.safetensors" --loss xent --out "$tmp/g-pt.safetensors" \
  >/dev/null 2>"$tmp/pt.err"
[ ! -s "$tmp/pt.err" ] || { cat "$tmp/pt.err"; fail "a float32 state dict printed something on stderr"; }
[ "$(st names "$tmp/g-pt.safetensors")" = "fc.bias:F32 fc.weight:F32 lstm.bias_hh_l0:F32 lstm.bias_hh_l1:F32 lstm.bias_ih_l0:F32 lstm.bias_ih_l1:F32 lstm.weight_hh_l0:F32 lstm.weight_hh_l1:F32 lstm.weight_ih_l0:F32 lstm.weight_ih_l1:F32" ] \
  || fail "gradient names: $(st names "$tmp/g-pt.safetensors")"
st same "$tmp/g.safetensors" "$tmp/g-pt.safetensors" "lstm." "fc." || fail "gradients of the state dict differ from the model's"
# No metadata at all, and "__metadata__": null.
st torchify "$tmp/m.safetensors" "$tmp/pt-none.safetensors" "" "head." none
"$bin" grad --model "$tmp/pt-none.safetensors" --inputs "$tmp/x.safetensors" --loss xent --out "$tmp/g-none.safetensors" >/dev/null
st same "$tmp/g.safetensors" "$tmp/g-none.safetensors" "" "head." || fail "gradients without metadata differ"
st torchify "$tmp/m.safetensors" "$tmp/pt-null.safetensors" "model.rnn." "model.head." none --null-metadata
"$bin" grad --model "$tmp/pt-null.safetensors" --inputs "$tmp/x.safetensors" --loss xent >/dev/null
# Usage errors and contradictions.
expect_error "--loss" "$bin" grad --model "$tmp/pt.safetensors" --inputs "$tmp/x.safetensors" --loss l2
expect_error "--loss mse_last contradicts the file's metadata loss=xent" "$bin" grad --model "$tmp/m.safetensors" --inputs "$tmp/x.safetensors" --loss mse_last
st torchify "$tmp/m.safetensors" "$tmp/pt-bad.safetensors" "lstm." "fc." '{"format": "pt", "hidden_size": "6", "loss": "xent"}'
expect_error "metadata hidden_size=6 contradicts the tensors: 'lstm.weight_hh_l0' [20, 5] gives 5" "$bin" grad --model "$tmp/pt-bad.safetensors" --inputs "$tmp/x.safetensors"

# 3. BF16: the model and inputs in BF16 give the gradients of the float32 model holding the same values.
st torchify "$tmp/m.safetensors" "$tmp/m-bf16vals.safetensors" "rnn." "head." \
  '{"cell": "lstm", "input_size": "3", "hidden_size": "5", "num_layers": "2", "output_size": "4", "loss": "xent", "dtype": "float32"}' bf16 values-only
st torchify "$tmp/m.safetensors" "$tmp/m-bf16.safetensors" "lstm." "fc." '{"format": "pt"}' bf16
"$bin" grad --model "$tmp/m-bf16vals.safetensors" --inputs "$tmp/x.safetensors" --policy msm --memory 40% --out "$tmp/g32.safetensors" >/dev/null
"$bin" grad --model "$tmp/m-bf16.safetensors" --inputs "$tmp/x-bf16.safetensors" --loss xent --policy msm --memory 40% \
  --out "$tmp/g16.safetensors" >/dev/null 2>"$tmp/bf16.err"
[ "$(grep -c . "$tmp/bf16.err")" -eq 2 ] || { cat "$tmp/bf16.err"; fail "expected one note for the model and one for the inputs"; }
grep -q "^note: model file .*m-bf16.safetensors: the parameters are BF16; membptt computes in float32 (and writes gradients, where it writes them, in float32)$" "$tmp/bf16.err" || { cat "$tmp/bf16.err"; fail "model note"; }
grep -q "^note: inputs file .*x-bf16.safetensors: 'input' BF16 converted exactly to float32 for the computation$" "$tmp/bf16.err" || { cat "$tmp/bf16.err"; fail "inputs note"; }
st same "$tmp/g32.safetensors" "$tmp/g16.safetensors" "lstm." "fc." || fail "BF16 gradients differ from float32's on the same values"
# A weight that is not finite is refused as an input value is, naming the tensor and the index.
st poison "$tmp/m.safetensors" "$tmp/m-nan.safetensors" rnn.weight_hh_l1 nan
expect_error "tensor 'rnn.weight_hh_l1' holds nan at index 3: allowed are finite values" \
  "$bin" grad --model "$tmp/m-nan.safetensors" --inputs "$tmp/x.safetensors"
st poison "$tmp/m.safetensors" "$tmp/m-inf.safetensors" head.bias -inf
expect_error "tensor 'head.bias' holds -inf at index 3" "$bin" eval --model "$tmp/m-inf.safetensors" --task copy --length 25

# eval reads a state dict too: the sizes from the tensors, the loss from --task.
"$bin" train --task adding --length 20 --hidden 4 --batch 2 --steps 3 --eval-sequences 8 --save "$tmp/run" >/dev/null
st torchify "$tmp/run/model.safetensors" "$tmp/add-pt.safetensors" "lstm." "fc." '{"format": "pt"}'
ev=(--task adding --length 20 --batch 2 --sequences 8 --seed 5 --json)
"$bin" eval --model "$tmp/run/model.safetensors" "${ev[@]}" >"$tmp/ev-own.json"
"$bin" eval --model "$tmp/add-pt.safetensors" "${ev[@]}" >"$tmp/ev-pt.json"
cmp "$tmp/ev-own.json" "$tmp/ev-pt.json" || fail "eval of the state dict differs from the model's"
expect_error "has no metadata 'loss': pass --task adding, copy or text" "$bin" eval --model "$tmp/add-pt.safetensors"
expect_error "add-pt.safetensors has input_size 2 and output_size 1; --task copy needs 10 and 9" "$bin" eval --model "$tmp/add-pt.safetensors" --task copy
expect_error "this is a zip archive, which is what torch.save writes" "$bin" eval --model "$tmp/model.pt"
! grep -q "truncated or corrupt" "$tmp/err" || fail "a torch.save file called corrupt"
echo "ok: foreign files, PyTorch state dicts, BF16"

# 4. With PyTorch: a real torch.save file, converted as the message says, against torch's gradients.
if ! "$py" -c 'import torch' 2>/dev/null; then
  echo "SKIP (part 4): $py cannot import torch (install Debian's python3-torch)"
  exit 0
fi
cat >"$tmp/torch_case.py" <<'EOF'
import sys, torch
sys.path.insert(0, sys.argv[1])
import membptt_st as st
cmd, work = sys.argv[2], sys.argv[3]
torch.manual_seed(0)

class Model(torch.nn.Module):  # as users write it: other submodule names than membptt's
    def __init__(self):
        super().__init__()
        self.gru = torch.nn.GRU(3, 6, num_layers=2)
        self.fc = torch.nn.Linear(6, 2)

if cmd == "make":
    m = Model()
    torch.save(m.state_dict(), f"{work}/user.pt")
    x = torch.randn(9, 4, 3)
    y = torch.randn(4, 2)
    st.save(f"{work}/ux.safetensors", {"input": x, "target": y})
    # The reference: PyTorch's gradients of mse_last on the same weights.
    m.zero_grad()
    out, _ = m.gru(x)
    loss = ((m.fc(out[-1]) - y) ** 2).mean()
    loss.backward()
    st.save(f"{work}/ug-torch.safetensors", {k: p.grad for k, p in m.named_parameters()}, {"loss_value": repr(loss.item())})
elif cmd == "compare":
    ours, _ = st.load(f"{work}/ug.safetensors")
    theirs, _ = st.load(f"{work}/ug-torch.safetensors")
    assert set(ours) == set(theirs), (sorted(ours), sorted(theirs))
    for k in theirs:
        assert ours[k].dtype == torch.float32, (k, ours[k].dtype)
        err = (ours[k].double() - theirs[k].double()).abs().max().item() / theirs[k].abs().max().item()
        assert err < 1e-5, (k, err)
    print("ok: converted torch.save file matches PyTorch's gradients")
EOF
"$py" "$tmp/torch_case.py" "$root/python" make "$tmp"
expect_error "user.pt: this is a zip archive, which is what torch.save writes" "$bin" grad --model "$tmp/user.pt" --inputs "$tmp/ux.safetensors"
(cd "$root" && "$py" python/membptt_st.py convert "$tmp/user.pt" "$tmp/user.safetensors" >/dev/null)
"$bin" grad --model "$tmp/user.safetensors" --inputs "$tmp/ux.safetensors" --loss mse_last --out "$tmp/ug.safetensors" >/dev/null
"$py" "$tmp/torch_case.py" "$root/python" compare "$tmp"
# convert --loss records the loss, so no flag is needed.
(cd "$root" && "$py" python/membptt_st.py convert "$tmp/user.pt" "$tmp/user2.safetensors" --loss mse_last >/dev/null)
"$bin" grad --model "$tmp/user2.safetensors" --inputs "$tmp/ux.safetensors" --out "$tmp/ug.safetensors" >/dev/null
"$py" "$tmp/torch_case.py" "$root/python" compare "$tmp"
