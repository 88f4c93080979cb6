"""Golden data from llama.cpp for the tiny family models of tests/families.py: the families with
no real file here (llama with rope_freqs or YaRN, qwen3, gemma2, phi3, olmo2, granite, smollm3,
mistral3).

Run with llamacli's interpreter; llama.cpp runs in subprocesses (llamacli never imports llama_cpp):

    python scripts/make_family_reference.py [--peer /work/peer-venv/bin/python]
        [--lib /work/peer/avx2/bin] [--perplexity /work/peer/avx2/bin/llama-perplexity]

The peer interpreter needs numpy and llama-cpp-python 0.3.36's `llama_cpp` package; with
`--lib`, LLAMA_CPP_LIB_PATH points it at a libllama built from the same sdist (the AVX2 build:
GGML_NATIVE=OFF, AVX2/FMA/F16C/BMI2 on), so no third build is needed.

Writes tests/golden/families/<name>.json, small: the sha256 of the GGUF written (the test rebuilds
it and checks that it is the same file), the token ids, and for each of 64 positions of llama.cpp's
decode path (one token per llama_decode, flash attention off) the sha256 of the float32 logits row,
its top-10 ids and logits and its log-sum-exp; then llama-perplexity's running estimates on
tests/golden/reference.txt with -c 128 -b 1 -fa off.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from families import FAMILY_MODELS, family_tokens, write_family  # noqa: E402
from peer_decode import PEER  # noqa: E402

OUT = ROOT / "tests" / "golden" / "families"
TEXT = ROOT / "tests" / "golden" / "reference.txt"
TOP = 10
PPL_ARGS = ["-c", "128", "-b", "1", "-fa", "off", "--chunks", "3", "-t", "2"]
# the mixture-of-experts models are also quantized by llama-quantize (from the F16 file it makes
# with --allow-requantize): llama-quant's rules for expert tensors, and the MXFP4_MOE mixture
QUANT_FTYPES = ("Q4_K_M", "Q8_0", "MXFP4_MOE")


CHUNK_RE = re.compile(r"\[(\d+)\]([0-9.]+|nan|inf),")


def perplexity(binary: Path, model: Path, tries: int = 3) -> list[float]:
    """llama-perplexity's running estimates; its logger can lose the last lines at exit, so the
    run is repeated until every chunk's estimate is there."""
    for _ in range(tries):
        p = subprocess.run([str(binary), "-m", str(model), "-f", str(TEXT), *PPL_ARGS],
                           capture_output=True, text=True, check=False)
        est = [float(v) for _, v in CHUNK_RE.findall(p.stdout + p.stderr)]
        if p.returncode == 0 and len(est) == 3:
            return est
    sys.exit(f"llama-perplexity failed on {model} (exit {p.returncode}):\n{(p.stdout + p.stderr)[-2000:]}")


def quantized(binary: Path, model: Path, tmp: Path) -> dict:
    """sha256 of llama-quantize's F16 copy and of each mixture made from it."""
    def run(src, dst, ftype, *extra):
        p = subprocess.run([str(binary), *extra, str(src), str(dst), ftype], capture_output=True, text=True)
        if p.returncode:
            sys.exit(f"llama-quantize {ftype} failed on {src}:\n{p.stderr[-2000:]}")
        return hashlib.sha256(dst.read_bytes()).hexdigest()

    f16 = tmp / (model.stem + ".F16.gguf")
    out = {"F16": run(model, f16, "F16", "--allow-requantize")}
    for ft in QUANT_FTYPES:
        out[ft] = run(f16, tmp / f"{model.stem}.{ft}.gguf", ft)
    return out


def record(logits: np.ndarray) -> dict:
    top = np.argsort(-logits, axis=1, kind="stable")[:, :TOP]
    lse = np.log(np.exp(logits.astype(np.float64)).sum(axis=1))
    return {"row_sha256": [hashlib.sha256(np.ascontiguousarray(r).tobytes()).hexdigest()[:16] for r in logits],
            "top_ids": top.tolist(), "top_logits": np.take_along_axis(logits, top, axis=1).tolist(),
            "lse": lse.tolist()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--peer", default="/work/peer-venv/bin/python", help="interpreter with llama_cpp 0.3.36")
    ap.add_argument("--lib", default="/work/peer/avx2/bin", help="folder of libllama.so (LLAMA_CPP_LIB_PATH)")
    ap.add_argument("--perplexity", type=Path, default=Path("/work/peer/avx2/bin/llama-perplexity"))
    ap.add_argument("--quantize", type=Path, default=Path("/work/peer/avx2/bin/llama-quantize"))
    ap.add_argument("names", nargs="*", help="models to (re)make; default: all")
    args = ap.parse_args()
    env = dict(os.environ, LLAMA_CPP_LIB_PATH=args.lib)
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.names or FAMILY_MODELS:
            path = write_family(name, Path(tmp) / f"{name}.gguf")
            toks = family_tokens(name)
            npy = Path(tmp) / f"{name}.npy"
            p = subprocess.run([args.peer, "-c", PEER, str(path), ",".join(map(str, toks)), str(npy)], env=env,
                               capture_output=True, text=True)
            if p.returncode:
                sys.exit(f"{name}: llama.cpp failed:\n{p.stderr[-3000:]}")
            logits = np.load(npy)
            rec = {"gguf_sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "desc": p.stdout.strip(),
                   "build": Path(args.lib).parent.name, "tokens": toks, **record(logits),
                   "perplexity": {"args": PPL_ARGS, "text": TEXT.name, "estimates": perplexity(args.perplexity, path)}}
            if FAMILY_MODELS[name][2].get("moe"):
                rec["quantized"] = quantized(args.quantize, path, Path(tmp))
            (OUT / f"{name}.json").write_text(json.dumps(rec, separators=(",", ":")) + "\n")
            print(f"{name}: {rec['desc']}, ppl {rec['perplexity']['estimates']}")


if __name__ == "__main__":
    main()
