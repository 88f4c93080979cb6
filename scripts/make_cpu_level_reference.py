"""Golden data for every CPU level (kernels/cpu.py): the decode-path logits of both real models
from three builds of the same llama.cpp, one per level.

    python scripts/make_cpu_level_reference.py avx2=/work/peer/avx2/bin \
        avx512=/work/peer/avx512/bin amx=/work/peer/native/bin

Each build is a directory holding libllama.so (LLAMA_CPP_LIB_PATH for llama-cpp-python 0.3.36,
run in the peer's interpreter, /work/peer-venv, in a subprocess: llamacli never imports it):
  avx2    -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON
  avx512  the same plus -DGGML_AVX512=ON -DGGML_AVX512_VBMI=ON -DGGML_AVX512_VNNI=ON
          -DGGML_AVX512_BF16=ON (Zen 4 / 5's set, no AMX)
  amx     -DGGML_NATIVE=ON on a Xeon with AMX-INT8 (Sapphire Rapids or later)
The script checks each build's system_info line names the features of its level.

Writes tests/golden/cpu_levels.json: per model and level, the sha256 of each float32 logit row
of the first tokens of the reference text (the tokens of tests/golden/<model>/logits.npz; 256
of them, 32 for the F16 copy of SmolLM2 that the avx2 build's llama-quantize makes), one token
per llama_decode, flash attention off (scripts/peer_decode.py).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from peer_decode import PEER  # noqa: E402

GOLDEN = ROOT / "tests" / "golden"
CACHE = Path.home() / ".cache" / "llamacli"
PEER_PYTHON = "/work/peer-venv/bin/python"
MODELS = {"smollm2": CACHE / "SmolLM2-135M-Instruct.Q4_1.gguf", "gemma3": CACHE / "gemma-3-270m-q4_k_m.gguf"}
N_TOKENS = {"smollm2": 256, "gemma3": 256, "smollm2_f16": 32}  # peer_decode's context is 256
SYSTEM_INFO = "import llama_cpp as L; print(L.llama_print_system_info().decode())"
# what each level's system_info must (and must not) say
MUST = {"avx2": ("AVX2 = 1",), "avx512": ("AVX2 = 1", "AVX512 = 1"), "amx": ("AVX512 = 1", "AMX_INT8 = 1")}
MUST_NOT = {"avx2": ("AVX512 = 1", "AMX_INT8 = 1"), "avx512": ("AMX_INT8 = 1",), "amx": ()}


def peer(lib: str, *args: str) -> str:
    env = {"LLAMA_CPP_LIB_PATH": lib, "PATH": "/usr/bin:/bin"}
    r = subprocess.run([PEER_PYTHON, "-c", *args], capture_output=True, text=True, env=env)
    if r.returncode:
        sys.exit(f"peer failed ({lib}): {r.stderr[-2000:]}")
    return r.stdout.strip()


def main(argv: list[str]) -> None:
    builds = dict(a.split("=", 1) for a in argv)
    if not builds or set(builds) - set(MUST):
        sys.exit(f"usage: {Path(__file__).name} LEVEL=LIBDIR ... (levels: {', '.join(MUST)})")
    out = {"models": {}}
    for level, lib in builds.items():
        info = peer(lib, SYSTEM_INFO)
        bad = [f for f in MUST[level] if f not in info] + [f"not {f}" for f in MUST_NOT[level] if f in info]
        if bad:
            sys.exit(f"{lib} is not a {level} build: {', '.join(bad)}\n{info}")
        out.setdefault("system_info", {})[level] = info
    with tempfile.TemporaryDirectory() as work:
        models = dict(MODELS, smollm2_f16=Path(work) / "smollm2-f16.gguf")
        quantize = Path(builds.get("avx2", next(iter(builds.values())))) / "llama-quantize"
        subprocess.run([str(quantize), "--allow-requantize", str(MODELS["smollm2"]), str(models["smollm2_f16"]), "F16"],
                       check=True, capture_output=True)
        for name, path in models.items():
            n = N_TOKENS[name]
            tokens = np.load(GOLDEN / name.split("_")[0] / "logits.npz")["tokens"][:n]
            rows = {}
            for level, lib in builds.items():
                npy = Path(work) / "logits.npy"
                peer(lib, PEER, str(path), ",".join(map(str, tokens)), str(npy))
                logits = np.load(npy)
                rows[level] = [hashlib.sha256(np.ascontiguousarray(r, np.float32).tobytes()).hexdigest() for r in logits]
                print(f"{name} {level}: {len(logits)} rows")
            out["models"][name] = {"tokens": n, "rows": rows}
    dst = GOLDEN / "cpu_levels.json"
    tmp = dst.with_suffix(".tmp")
    tmp.write_text(json.dumps(out, indent=1) + "\n")
    tmp.replace(dst)
    print(f"wrote {dst}")


if __name__ == "__main__":
    main(sys.argv[1:])
