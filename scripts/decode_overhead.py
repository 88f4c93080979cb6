#!/usr/bin/env python3
"""The Python and dispatch overhead of one decode step, measured on a model whose matrices are
tiny: the same graph as SmolLM2 (30 llama blocks) with 64-wide layers, so the kernels' work is
close to nothing and what remains is the cost of running the graph from Python (argument
unboxing, views, starting parallel regions). Compare it with a real model's time per token.

    .venv/bin/python scripts/decode_overhead.py [--layers 30] [--steps 300]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from synthetic import write_tiny_llama  # noqa: E402

from llamacli.model.transformer import load_model  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=30)
    ap.add_argument("--steps", type=int, default=300)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        path = write_tiny_llama(Path(d) / "tiny.gguf", n_embd=64, n_layer=a.layers, n_head=2)  # head_dim 32
        for nt in (1, 2):
            m = load_model(path, n_ctx=64, n_batch=64, n_threads=nt)
            m.eval([1, 2, 3])
            for _ in range(20):  # compile / load everything first
                m.eval([5])
            m.state.reset()
            m.eval([1, 2, 3])
            ts = []
            for _ in range(a.steps):  # always the fourth position: attention over four keys
                m.state.truncate(3)
                t0 = time.perf_counter()
                m.eval([5])
                ts.append(time.perf_counter() - t0)
            print(f"-t {nt}: {np.median(ts) * 1e3:.3f} ms per decode step of {a.layers} tiny blocks "
                  f"(median of {a.steps}; p90 {np.percentile(ts, 90) * 1e3:.3f} ms)")


if __name__ == "__main__":
    main()
