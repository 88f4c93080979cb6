#!/usr/bin/env python3
"""Time `llamacli quantize` against llama.cpp's llama-quantize, side by side, whole process.

    .venv/bin/python scripts/bench_quantize.py [--runs 3] [--threads 2 1] [--type Q4_K_M]
        [--imatrix FILE|synthetic] [--llama-quantize /work/peer/native/bin/llama-quantize]
        [smollm2] [gemma3]

--imatrix synthetic writes tests/imatrix_synthetic.py's imatrix for the model (what the golden
files of the i-quant mixtures were made with) and passes it to both tools.

For each model's F16 file (made in the cache with our own requantizer if missing) and each
thread count, the two commands run alternately (ours, theirs, ours, ...) into a temporary
folder; the medians of wall time and the peak RSS (getrusage of the child) are printed with
the ratio ours-speed / theirs-speed (= their time / our time; 1.0 is parity). Run it on an
otherwise quiet machine: the numbers are only as good as the machine's calm.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("LLAMACLI_CACHE", Path.home() / ".cache" / "llamacli"))
MODELS = {  # model -> (cached source, F16 file made from it)
    "smollm2": ("SmolLM2-135M-Instruct.Q4_1.gguf", "SmolLM2-135M-Instruct.F16.gguf"),
    "gemma3": ("gemma-3-270m-q4_k_m.gguf", "gemma-3-270m.F16.gguf"),
}


def run(cmd: list[str]) -> tuple[float, int]:
    """(wall seconds, peak RSS in MiB) of one child process."""
    with tempfile.TemporaryFile() as log:  # a file, not a pipe: a full pipe would stall the child
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log)
        _, status, ru = os.wait4(p.pid, 0)
        dt = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        if p.returncode != 0:
            log.seek(0)
            raise SystemExit(f"failed: {' '.join(cmd)}\n{log.read().decode(errors='replace')[-2000:]}")
    return dt, ru.ru_maxrss // 1024


def f16_file(model: str) -> Path:
    src, f16 = MODELS[model]
    path = CACHE / f16
    if not path.exists():
        sys.path.insert(0, str(REPO))
        from llamacli.quantize import make_f16

        print(f"making {path} from {src} ...", flush=True)
        make_f16(CACHE / src, path)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="*", default=list(MODELS), help=f"any of {', '.join(MODELS)}")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, nargs="+", default=[2, 1])
    ap.add_argument("--type", default="Q4_K_M")
    ap.add_argument("--imatrix", help="an imatrix file for both tools, or 'synthetic'")
    ap.add_argument("--llama-quantize", default="/work/peer/native/bin/llama-quantize")
    ap.add_argument("--llamacli", default=str(REPO / ".venv" / "bin" / "llamacli"))
    a = ap.parse_args()
    for m in a.models:
        if m not in MODELS:
            ap.error(f"unknown model {m!r} (one of {', '.join(MODELS)})")
    if not Path(a.llama_quantize).exists():
        raise SystemExit(f"{a.llama_quantize}: not built (see the README of the peer build)")

    print(f"{'model':8s} {'thr':>3s} | {'ours s':>7s} {'RSS MiB':>7s} | {'llama s':>7s} {'RSS MiB':>7s} | ours/llama speed")
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        out_ours, out_theirs = Path(tmp) / "ours.gguf", Path(tmp) / "theirs.gguf"
        for model in a.models:
            f16 = f16_file(model)
            imx = []
            if a.imatrix == "synthetic":
                sys.path.insert(0, str(REPO / "tests"))
                from imatrix_synthetic import write_model_imatrix
                from llamacli.quantize.scan import ScannedGGUF

                path = Path(tmp) / f"{model}.imatrix.gguf"
                write_model_imatrix(path, [(v.name, v.ne) for v in ScannedGGUF(f16).tensors.values()])
                imx = ["--imatrix", str(path)]
            elif a.imatrix:
                imx = ["--imatrix", a.imatrix]
            for nt in a.threads:
                ours_cmd = [a.llamacli, "quantize", *imx, str(f16), str(out_ours), a.type, str(nt)]
                theirs_cmd = [a.llama_quantize, *imx, str(f16), str(out_theirs), a.type, str(nt)]
                run(ours_cmd)  # warm: page cache, Numba's on-disk cache
                run(theirs_cmd)
                ours, theirs = [], []
                for _ in range(a.runs):
                    ours.append(run(ours_cmd))
                    out_ours.unlink()
                    theirs.append(run(theirs_cmd))
                    out_theirs.unlink()
                to = statistics.median(t for t, _ in ours)
                tt = statistics.median(t for t, _ in theirs)
                ro = max(r for _, r in ours)
                rt = max(r for _, r in theirs)
                print(f"{model:8s} {nt:3d} | {to:7.2f} {ro:7d} | {tt:7.2f} {rt:7d} | {tt / to:.2f}x", flush=True)


if __name__ == "__main__":
    main()
