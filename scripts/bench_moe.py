#!/usr/bin/env python3
"""Mixture-of-experts speed against llama.cpp, on a synthetic model with Qwen3-30B-A3B's widths.

The model (tests/families.py's qwen3moe, reshaped) has Qwen3-30B-A3B's hidden size 2048, 16
heads of 128 over 4 kv heads, 128 experts of which 8 are used, experts 768 wide, Q4_K expert and
attention weights and an F32 router, but few layers (2 by default) and the tiny test vocabulary,
so that it fits in memory and builds in a minute. It is written to --out (kept for reruns).

Reports:
  - bytes of weights read by one decode token, counted at the matmul seam (Model.be.linear),
    against the bytes of the active parameters: every non-expert weight plus 8/128 of each
    expert tensor. They must match: nothing dense hides in the expert path;
  - pp512 and tg128 of `llamacli bench` against `llama-bench` on the same file, at -t 1 and -t 2,
    run alternately as scripts/bench_vs_llamacpp.py does.

    scripts/bench_moe.py [--layers 2] [--out /tmp/moe-bench.gguf] [-r 3] [--rounds 2]

Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "scripts"))

from gguf import GGMLQuantizationType as T  # noqa: E402

import bench_vs_llamacpp as bv  # noqa: E402
from families import write_family  # noqa: E402

N_EXPERT, N_USED, N_FF_EXP = 128, 8, 768


def build(path: Path, layers: int) -> Path:
    if path.exists():
        return path
    bv.say(f"writing {path} ({layers} layers)")
    meta = {"expert_count": N_EXPERT, "expert_used_count": N_USED, "expert_feed_forward_length": N_FF_EXP}
    base = dict(n_embd=2048, n_layer=layers, n_head=16, n_head_kv=4, n_ff=6144, ctx=4096)
    opt = dict(moe=dict(n_expert=N_EXPERT, n_used=N_USED, n_ff_exp=N_FF_EXP), exp_type=T.Q4_K)
    return write_family("qwen3moe", path, meta=meta, base=base, opt=opt)


def bytes_per_token(path: Path) -> tuple[int, int]:
    """(bytes the matmuls of one decode token read, bytes of the active parameters)."""
    from llamacli.model.transformer import Backend, load_model

    class Counting(Backend):
        read = 0

        def linear(self, act, w, out):
            Counting.read += w.rows.nbytes
            super().linear(act, w, out)

    m = load_model(path, n_ctx=64, n_batch=8, n_threads=2, backend=Counting())
    m.eval([1, 2, 3, 4])
    Counting.read = 0
    m.eval([5])
    active = 0
    for t in m.gguf.tensors.values():
        if len(t.ne) == 1 or (t.name == "token_embd.weight" and not m.weights.tied):
            continue  # norms and biases; an untied embedding is read one row a token
        # an expert tensor holds N_EXPERT experts, of which a token reads N_USED
        active += t.n_bytes // N_EXPERT * N_USED if "_exps." in t.name else t.n_bytes
    return Counting.read, active


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("/tmp/moe-bench.gguf"))
    ap.add_argument("-t", "--threads", default="1,2")
    ap.add_argument("-p", "--n-prompt", type=int, default=512)
    ap.add_argument("-n", "--n-gen", type=int, default=128)
    ap.add_argument("-r", "--reps", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--llama-bench", type=Path, default=Path("/work/peer/native/bin/llama-bench"))
    args = ap.parse_args()
    args.threads = [int(x) for x in args.threads.split(",")]
    path = build(args.out, args.layers)
    read, active = bytes_per_token(path)
    print(f"decode token: {read} bytes of weights read, {active} bytes of active parameters "
          f"({'equal' if read == active else 'DIFFERENT'})")
    bv.print_throughput(bv.throughput({"moe-qwen3-30b-a3b-widths": path}, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
