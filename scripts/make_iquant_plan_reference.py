#!/usr/bin/env python3
"""Golden data for the i-quant mixtures' per-tensor plans (and the imatrix-dependent rules),
made by llama.cpp's own llama-quantize.

    python scripts/make_iquant_plan_reference.py

For SmolLM2 and Gemma-3 it makes the F16 model llama.cpp makes (``llama-quantize
--allow-requantize cached.gguf f16.gguf F16``), writes the synthetic imatrix of
tests/imatrix_synthetic.py for it, and runs ``llama-quantize --dry-run [--imatrix FILE] f16.gguf
TYPE`` for every mixture in FTYPES, with and without the imatrix: the dry run decides each
tensor's type in the same pass (llama_tensor_get_type) as a real run. From its per-tensor lines
it records the type of every tensor in write order, and the fallback count it warns about.
For SmolLM2 it also records the sha256 of the whole file llama-quantize writes for each of
FILES with that imatrix (``--imatrix smollm2.imatrix.gguf``, relative: the path is part of the
output's metadata).
For SmolLM2 IQ4_NL and IQ2_XXS it also makes the real file and checks its tensor types are the
dry run's. -> tests/golden/quant/iquant_plans.json, with the F16 file's tensor list and the
hyper-parameters the rules read, so the test needs no model.

The binary is $LLAMA_QUANTIZE (default /work/peer/avx2/bin/llama-quantize).
"""

from __future__ import annotations

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

from imatrix_synthetic import write_model_imatrix  # noqa: E402
from llamacli.quantize.plan import hparams_of, ggml_type_name  # noqa: E402
from llamacli.quantize.scan import ScannedGGUF  # noqa: E402

BINARY = Path(os.environ.get("LLAMA_QUANTIZE", "/work/peer/avx2/bin/llama-quantize"))
CACHE = Path.home() / ".cache/llamacli"
MODELS = {"smollm2": "SmolLM2-135M-Instruct.Q4_1.gguf", "gemma3": "gemma-3-270m-q4_k_m.gguf"}
FTYPES = ["IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ2_M", "IQ3_XXS", "IQ3_XS", "IQ3_S", "IQ3_M",
          "IQ4_NL", "IQ4_XS", "TQ1_0", "TQ2_0", "Q4_0", "Q5_0", "Q2_K_S", "Q4_K_M"]
REAL = [("smollm2", "IQ4_NL"), ("smollm2", "IQ2_XXS")]
# whole files with the synthetic imatrix (SmolLM2): the importance-weighted quantizers end to end
FILES = ["Q8_0", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ2_M", "IQ1_S", "IQ1_M", "IQ3_XXS", "IQ3_XS", "IQ3_S", "IQ3_M",
         "IQ4_NL", "IQ4_XS", "TQ1_0", "TQ2_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q2_K_S", "Q3_K_S",
         "Q3_K_M", "Q4_K_M", "Q5_K_M", "Q6_K"]
IMATRIX_NAME = "smollm2.imatrix.gguf"  # relative, run from its folder: the path is in the output's metadata
LINE = re.compile(r"^\[\s*\d+/\s*\d+\] (\S+)\s+- \[[^\]]*\], type =\s*(\S+), size = .*?(?:\((\S+)\))?$")
FALLBACK = re.compile(r"WARNING: (\d+) of \d+ tensor\(s\) required fallback quantization")


def _run(args: list[str], cwd=None) -> str:
    env = dict(os.environ, LD_LIBRARY_PATH=str(BINARY.parent))
    r = subprocess.run([str(BINARY), *args], capture_output=True, text=True, env=env, cwd=cwd)
    if r.returncode != 0:
        sys.exit(f"{BINARY.name} {' '.join(args)} failed:\n{r.stderr[-2000:]}")
    return r.stdout + r.stderr


def _plan(log: str) -> tuple[list[str], list[str], int]:
    names, types = [], []
    for ln in log.splitlines():
        m = LINE.match(ln)
        if m:
            names.append(m.group(1))
            types.append(m.group(3) or m.group(2))
    fb = FALLBACK.search(log)
    return names, types, int(fb.group(1)) if fb else 0


def _files(tmp: Path, f16: Path, imx: Path) -> dict:
    import hashlib

    assert imx.name == IMATRIX_NAME
    res = {"model": "smollm2", "imatrix": IMATRIX_NAME, "imatrix_sha256": hashlib.sha256(imx.read_bytes()).hexdigest(),
           "f16_sha256": hashlib.sha256(f16.read_bytes()).hexdigest(), "sha256": {}}
    for ft in FILES:
        out = tmp / f"file-{ft}.gguf"
        _run(["--imatrix", IMATRIX_NAME, f16.name, out.name, ft, "2"], cwd=tmp)
        res["sha256"][ft] = hashlib.sha256(out.read_bytes()).hexdigest()
        out.unlink()
        print(f"  {ft}", flush=True)
    return res


def main() -> None:
    doc = {"binary": str(BINARY), "ftypes": FTYPES, "models": {}}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for model, fname in MODELS.items():
            f16 = tmp / f"{model}-f16.gguf"
            _run(["--allow-requantize", str(CACHE / fname), str(f16), "F16"])
            g = ScannedGGUF(f16)
            tensors = [(v.name, list(v.ne), ggml_type_name(v.qtype)) for v in g.tensors.values()]
            imx = tmp / f"{model}.imatrix.gguf"
            write_model_imatrix(imx, [(n, ne) for n, ne, _ in tensors])
            hp = hparams_of(g)
            entry = {"source": fname, "hparams": hp.__dict__, "tensors": tensors, "plans": {}}
            for ft in FTYPES:
                for mode, extra in (("none", []), ("imatrix", ["--imatrix", str(imx)])):
                    names, types, n_fb = _plan(_run(["--dry-run", *extra, str(f16), ft]))
                    entry.setdefault("order", names)
                    assert names == entry["order"], f"{model} {ft}: tensor order changed"
                    entry["plans"][f"{ft}/{mode}"] = {"types": " ".join(types), "n_fallback": n_fb}
                    if (model, ft) in REAL and mode == "imatrix":
                        out = tmp / f"{model}-{ft}.gguf"
                        _run(["--imatrix", str(imx), str(f16), str(out), ft, "2"])
                        got = {v.name: ggml_type_name(v.qtype) for v in ScannedGGUF(out).tensors.values()}
                        assert [got[n] for n in names] == types, f"{model} {ft}: the file is not the dry run"
            doc["models"][model] = entry
            print(f"{model}: {len(FTYPES) * 2} plans", flush=True)
            if model == "smollm2":
                doc["files"] = _files(tmp, f16, imx)
    out = ROOT / "tests/golden/quant/iquant_plans.json"
    out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {out} ({out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
