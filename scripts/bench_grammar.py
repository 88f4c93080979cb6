#!/usr/bin/env python3
"""Generation speed under a JSON schema: `llamacli run -j` against `llama-completion -j`.

llama-bench takes no grammar, so both tools generate for real, side by side, alternating, with
the same prompt, schema, greedy sampling and thread count, and each reports its own eval speed
in llama.cpp's perf-summary line (`eval time = ... ms / N runs (... tokens per second)`). The
schema (an array of at least 32 short strings) lets generation run for the whole -n budget. The
table gives the mean t/s of each tool over --rounds and the ratio llamacli / llama.cpp.

    scripts/bench_grammar.py [--models smollm2,gemma3] [-n 128] [-t 2] [--rounds 3]

Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SCHEMA = {"type": "array", "items": {"type": "string", "maxLength": 12}, "minItems": 32}
PROMPT = "A list of fruit names as JSON:"
EVAL_RE = re.compile(r"\beval time =\s*([0-9.]+) ms /\s*(\d+) (?:runs|tokens).*?([0-9.]+) tokens per second")


def eval_speed(cmd: list[str], tries: int = 3) -> tuple[float, int]:
    """(tokens per second, tokens) from the perf line; llama.cpp's logger can lose its last
    lines at exit, so the run is repeated until the line is there."""
    for _ in range(tries):
        p = subprocess.run(cmd, capture_output=True, text=True)
        lines = [l for l in (p.stdout + p.stderr).splitlines() if "prompt eval" not in l]
        for line in lines:
            m = EVAL_RE.search(line)
            if m:
                return float(m.group(3)), int(m.group(2))
    raise SystemExit(f"no eval line from: {' '.join(cmd)}\n{(p.stdout + p.stderr)[-1500:]}")


def main() -> int:
    from llamacli.fetch import fetch

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="smollm2,gemma3")
    ap.add_argument("-n", type=int, default=128)
    ap.add_argument("-t", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--llama-completion", type=Path, default=Path("/work/peer/native/bin/llama-completion"))
    args = ap.parse_args()
    schema = json.dumps(SCHEMA)
    print("| model | -t | llama.cpp t/s | llamacli t/s | llamacli / llama.cpp | tokens |")
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    for name in args.models.split(","):
        model = str(fetch(name))
        common = ["-m", model, "-p", PROMPT, "-n", str(args.n), "-t", str(args.t), "--temp", "0", "-j", schema]
        ref_cmd = [str(args.llama_completion), *common, "-no-cnv", "--no-display-prompt"]
        ours_cmd = [sys.executable, "-m", "llamacli", "run", *common, "--no-display-prompt"]
        ref, ours, counts = [], [], set()
        for rnd in range(args.rounds):
            for tool in (("ref", "ours") if rnd % 2 == 0 else ("ours", "ref")):
                ts, n = eval_speed(ref_cmd if tool == "ref" else ours_cmd)
                (ref if tool == "ref" else ours).append(ts)
                counts.add((tool, n))
        r, o = sum(ref) / len(ref), sum(ours) / len(ours)
        print(f"| {name} | {args.t} | {r:.2f} | {o:.2f} | {o / r:.2f} | {sorted(counts)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
