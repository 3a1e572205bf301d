"""A tiny pure-Python safetensors reader/writer for torch tensors (no `safetensors` package needed).

    tensors, metadata = load(path)          # {name: torch.Tensor}, {str: str}
    save(path, tensors, metadata=None)      # atomic: path.tmp.<pid> + fsync + rename

The writer lays tensors out exactly like membptt's C++ SafeTensorsWriter (decreasing element size,
then name; sorted compact JSON header padded with spaces to a multiple of 8), so both produce the
same bytes for the same contents.

Convert what torch.save wrote (a state dict, or a whole module: its state_dict()) for membptt:
    python3 membptt_st.py convert MODEL.pt MODEL.safetensors [--loss xent|mse_last] [--trust]
loads with torch.load(weights_only=True) unless --trust (a whole pickled module needs it: only for
files you trust), keeps the tensors under their names, and writes metadata {"format": "pt"} plus
"loss" when given (membptt infers everything else from the tensors).

Self test used by the C++ tests:  python3 membptt_st.py roundtrip IN OUT
reads IN, and writes OUT with every float tensor x -> 2x + 1, every integer tensor x -> x + 1, an
extra tensor "torch.arange" = arange(6, dtype=float64).reshape(2, 3), and metadata plus
{"written_by": "membptt_st.py"}.
"""
import json
import os
import struct
import sys

import torch

assert sys.byteorder == "little", "safetensors data is little-endian"

DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
    "U8": torch.uint8, "BOOL": torch.bool,
}
NAMES = {v: k for k, v in DTYPES.items()}
MAX_HEADER = 100_000_000


class FormatError(ValueError):
    pass


def loads(data, source="<bytes>"):
    """Parses the bytes of a whole file; returns (tensors, metadata)."""
    def fail(msg):
        raise FormatError(f"safetensors file {source}: {msg}")

    if len(data) < 8:
        fail(f"file is {len(data)} bytes, shorter than the 8-byte prefix")
    (n,) = struct.unpack("<Q", data[:8])
    if n > MAX_HEADER or n > len(data) - 8:
        fail(f"header length {n} exceeds the file or the {MAX_HEADER}-byte limit")
    try:
        header = json.loads(data[8:8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        fail(f"header is not valid JSON: {e}")
    if not isinstance(header, dict):
        fail("header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        fail("__metadata__ must map strings to strings")
    buf = memoryview(data)[8 + n:]
    tensors, spans = {}, []
    for name, info in header.items():
        if not isinstance(info, dict) or info.get("dtype") not in DTYPES:
            fail(f"tensor {name!r}: {info!r} has no supported dtype")
        dtype, shape = DTYPES[info["dtype"]], info.get("shape")
        offsets = info.get("data_offsets")
        begin, end = offsets if isinstance(offsets, list) and len(offsets) == 2 else (None, None)
        if not (isinstance(shape, list) and all(type(d) is int and d >= 0 for d in shape)):
            fail(f"tensor {name!r} has bad shape {shape!r}")
        numel = 1
        for d in shape:
            numel *= d
        size = numel * torch.empty((), dtype=dtype).element_size()
        if not (type(begin) is int and type(end) is int and 0 <= begin <= end <= len(buf) and end - begin == size):
            fail(f"tensor {name!r} has bad data_offsets {[begin, end]} for shape {shape} ({size} bytes)")
        spans.append((begin, end))
        if numel == 0:
            tensors[name] = torch.empty(shape, dtype=dtype)
        else:
            tensors[name] = torch.frombuffer(bytearray(buf[begin:end]), dtype=dtype).reshape(shape)
    pos = 0
    for begin, end in sorted(spans):
        if begin != pos:
            fail(f"data buffer is not exactly covered at byte {pos}")
        pos = end
    if pos != len(buf):
        fail(f"data buffer is {len(buf)} bytes but the tensors cover {pos}")
    return tensors, dict(metadata)


def load(path):
    with open(path, "rb") as f:
        return loads(f.read(), source=path)


def dumps(tensors, metadata=None):
    """Serializes {name: tensor} (+ {str: str} metadata) to bytes."""
    items = []
    for name, t in tensors.items():
        t = t.detach().cpu().contiguous()
        if t.dtype not in NAMES:
            raise TypeError(f"tensor {name!r}: unsupported dtype {t.dtype}")
        items.append((name, t))
    items.sort(key=lambda kv: (-kv[1].element_size(), kv[0]))
    header, chunks, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    for name, t in items:
        raw = (t.view(torch.int16) if t.dtype == torch.bfloat16 else t).numpy().tobytes()
        header[name] = {"dtype": NAMES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(chunks)


def save(path, tensors, metadata=None):
    data = dumps(tensors, metadata)
    tmp = f"{path}.tmp.{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    dirfd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(dirfd)
    finally:
        os.close(dirfd)


def _roundtrip(src, dst):
    tensors, metadata = load(src)
    out = {}
    for name, t in tensors.items():
        out[name] = t * 2 + 1 if t.is_floating_point() else t + 1
    out["torch.arange"] = torch.arange(6, dtype=torch.float64).reshape(2, 3)
    metadata["written_by"] = "membptt_st.py"
    save(dst, out, metadata)


def _state_dict_of(obj, src):
    """The {name: tensor} inside what torch.load returned, or SystemExit with one line saying why not."""
    if isinstance(obj, torch.nn.Module):
        obj = obj.state_dict()
    if isinstance(obj, dict) and not all(isinstance(v, torch.Tensor) for v in obj.values()):
        # Training checkpoints often nest the weights: {"model_state_dict": {...}, "optimizer": ...}.
        nested = [k for k in ("state_dict", "model_state_dict", "model") if isinstance(obj.get(k), (dict, torch.nn.Module))]
        if nested:
            print(f"membptt_st.py: note: taking the tensors under key {nested[0]!r} of {src}", file=sys.stderr)
            return _state_dict_of(obj[nested[0]], src)
        bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)][:5]
        sys.exit(f"membptt_st.py: {src} holds entries that are not tensors ({', '.join(map(str, bad))}); "
                 "expected a state dict {name: tensor}")
    if not isinstance(obj, dict) or not obj:
        sys.exit(f"membptt_st.py: {src} holds a {type(obj).__name__}, expected a state dict {{name: tensor}} or a module")
    return obj


def convert(src, dst, loss=None, trust=False):
    try:
        obj = torch.load(src, map_location="cpu", weights_only=not trust)
    except TypeError:  # a torch without weights_only (before 1.13)
        obj = torch.load(src, map_location="cpu")
    except Exception as e:  # noqa: BLE001 - torch raises several kinds for a refused pickle
        if trust:
            raise
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        sys.exit(f"membptt_st.py: {src} is not a plain state dict (torch.load(weights_only=True): {first}); "
                 "if it is a whole module from a source you trust, rerun with --trust")
    tensors = _state_dict_of(obj, src)
    metadata = {"format": "pt"}
    if loss:
        metadata["loss"] = loss
    save(dst, tensors, metadata)
    print(f"wrote {dst}: {len(tensors)} tensors")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "roundtrip":
        _roundtrip(sys.argv[2], sys.argv[3])
    elif len(sys.argv) >= 2 and sys.argv[1] == "convert":
        import argparse
        ap = argparse.ArgumentParser(prog="membptt_st.py convert")
        ap.add_argument("src")
        ap.add_argument("dst")
        ap.add_argument("--loss", choices=("xent", "mse_last"))
        ap.add_argument("--trust", action="store_true", help="allow a whole pickled module (runs its pickle code)")
        a = ap.parse_args(sys.argv[2:])
        convert(a.src, a.dst, a.loss, a.trust)
    else:
        sys.exit("usage: membptt_st.py roundtrip IN OUT | convert IN.pt OUT.safetensors [--loss xent|mse_last] [--trust]")
