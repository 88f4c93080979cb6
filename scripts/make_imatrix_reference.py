#!/usr/bin/env python3
"""Golden data for `llamacli imatrix`, made by llama.cpp's own llama-imatrix binary.

    python scripts/make_imatrix_reference.py

1. ``llama-imatrix -m SmolLM2-135M-Instruct.Q4_1.gguf -f tests/golden/reference.txt -c 128
   --chunks 2 -b 128 -t 1 -fa off``: per entry its counts and the float64 sum of its values,
   the whole vector of blk.0.attn_q (its input, the normed embeddings, is the same in any
   batching, so ours must equal it bit for bit), and the running perplexity it printed
   -> tests/golden/imatrix/smollm2_c128.json.
2. The bookkeeping, exactly: the two synthetic files of tests/imatrix_synthetic.py converted
   and merged by ``llama-imatrix --in-file ...`` (GGUF and --output-format dat, with the chunk
   size of the file and with -c 64), and its --show-statistics lines
   -> tests/golden/imatrix/merge.json (sha256 of each output).

The binary is $LLAMA_IMATRIX (default /work/peer/avx2/bin/llama-imatrix, the AVX2 build the
tests' engine level mirrors).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import numpy as np  # noqa: E402

from imatrix_synthetic import write_synthetic  # noqa: E402
from llamacli.imatrix import load_imatrix  # noqa: E402

BINARY = Path(os.environ.get("LLAMA_IMATRIX", "/work/peer/avx2/bin/llama-imatrix"))
MODEL = Path.home() / ".cache/llamacli/SmolLM2-135M-Instruct.Q4_1.gguf"
TEXT = ROOT / "tests/golden/reference.txt"
OUT = ROOT / "tests/golden/imatrix"
RUN_ARGS = ["-c", "128", "--chunks", "2", "-b", "128", "-t", "1", "-fa", "off"]

# (name, --in-file inputs, extra arguments, output file name); "ref:X" is an earlier output
MERGES = [
    ("convert_gguf", ["a.gguf"], [], "conv.gguf"),
    ("merge_gguf", ["a.gguf", "b.gguf"], [], "merge.gguf"),
    ("convert_dat", ["a.gguf"], ["--output-format", "dat"], "conv.dat"),
    ("merge_dat", ["a.gguf", "b.gguf"], ["--output-format", "dat"], "merge.dat"),
    ("dat_to_gguf_c64", ["ref:conv.dat"], ["-c", "64"], "fromdat.gguf"),
    ("dat_and_gguf_c64", ["ref:conv.dat", "b.gguf"], ["-c", "64"], "mix.gguf"),
]


def _run(args: list[str]) -> str:
    env = dict(os.environ, LD_LIBRARY_PATH=str(BINARY.parent))
    r = subprocess.run([str(BINARY), *args], capture_output=True, text=True, env=env)
    if r.returncode != 0:
        sys.exit(f"{BINARY.name} {' '.join(args)} failed:\n{r.stderr[-2000:]}")
    return r.stdout + r.stderr


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def run_reference(tmp: Path) -> dict:
    out = tmp / "smollm2.gguf"
    log = _run(["-m", str(MODEL), "-f", str(TEXT), *RUN_ARGS, "-o", str(out)])
    chunk_ppl = [float(v) for v in re.findall(r"\[\d+\]([0-9.]+),", log)]
    final = re.search(r"Final estimate: PPL = ([0-9.]+) \+/- ([0-9.]+)", log)
    im = load_imatrix(out)
    entries = {n: {"counts": e.counts.tolist(), "sum": float(e.values.astype(np.float64).sum())}
               for n, e in sorted(im.entries.items())}
    q0 = im.entries["blk.0.attn_q.weight"].values.astype("<f4").tobytes()
    return {
        "command": f"llama-imatrix -m {MODEL.name} -f tests/golden/reference.txt {' '.join(RUN_ARGS)}",
        "model": MODEL.name, "args": RUN_ARGS, "chunk_ppl": chunk_ppl,
        "ppl": float(final.group(1)), "ppl_stderr": float(final.group(2)),
        "chunk_count": im.chunk_count, "chunk_size": im.chunk_size, "entries": entries,
        "blk.0.attn_q.weight": base64.b64encode(q0).decode(),
    }


def run_merges(tmp: Path) -> dict:
    write_synthetic(tmp / "a.gguf", "a")
    write_synthetic(tmp / "b.gguf", "b")
    res = {"inputs_sha256": {n: _sha(tmp / n) for n in ("a.gguf", "b.gguf")}, "outputs": {}}
    for name, inputs, extra, fname in MERGES:
        args = ["-m", str(MODEL)]
        for i in inputs:
            args += ["--in-file", str(tmp / ("ref-" + i[4:] if i.startswith("ref:") else i))]
        _run(args + extra + ["-o", str(tmp / f"ref-{fname}")])
        res["outputs"][name] = {"inputs": inputs, "args": extra, "file": fname,
                                "sha256": _sha(tmp / f"ref-{fname}")}
    log = _run(["-m", str(MODEL), "--in-file", str(tmp / "a.gguf"), "--show-statistics"])
    lines = [re.sub(r"^\d+\.\d+\.\d+\.\d+ [IWE] ?", "", ln) for ln in log.splitlines()]
    start = next(i for i, ln in enumerate(lines) if ln.startswith("Computing statistics"))
    res["statistics"] = [ln.replace(str(tmp / "a.gguf"), "a.gguf") for ln in lines[start:] if ln.strip()]
    return res


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        (OUT / "smollm2_c128.json").write_text(json.dumps(run_reference(tmp), indent=1) + "\n")
        (OUT / "merge.json").write_text(json.dumps(run_merges(tmp), indent=1) + "\n")
    print(f"wrote {OUT}/smollm2_c128.json, merge.json")


if __name__ == "__main__":
    main()
