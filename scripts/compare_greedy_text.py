"""Greedy text of `llamacli run` against llama-completion, both with their defaults (flash
attention auto, -b 2048 -ub 512, the whole prompt in one batch), --temp 0, 32 tokens.

    python scripts/compare_greedy_text.py [--peer-bin /work/peer/native/bin] [--model smollm2|gemma3|both]
        [-t 2] [-n 32] [-- extra flags for both tools]

Prints, per model, each prompt's verdict and the count of identical continuations. A figure for
the README, not a test: llama-completion is not run in CI.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path.home() / ".cache" / "llamacli"
MODELS = {"smollm2": CACHE / "SmolLM2-135M-Instruct.Q4_1.gguf", "gemma3": CACHE / "gemma-3-270m-q4_k_m.gguf"}
PROMPTS = [  # our own, of several lengths: a few take the tiled attention kernel (64 tokens or more)
    "The old lighthouse keeper climbed the stairs every evening because",
    "List three reasons why the sky appears blue during the day:",
    "In 1969, the first humans landed on the Moon. The mission was called",
    "def is_prime(n):\n    \"\"\"Return True if n is a prime number.\"\"\"\n",
    "Recipe for a simple tomato soup. Ingredients:",
    "The difference between a virus and a bacterium is",
    "Dear hiring manager, I am writing to apply for the position of",
    "Photosynthesis is the process by which green plants and some other organisms use sunlight to "
    "synthesize foods from carbon dioxide and water. Photosynthesis in plants generally involves the "
    "green pigment chlorophyll and generates oxygen as a byproduct. The main stages are",
    "Translate to French: 'The cat is sleeping on the warm windowsill.'\nFrench:",
    "A short poem about autumn leaves, in four lines:\n",
]


def run(cmd: list[str], tries: int = 3) -> str:
    """stdout of cmd; llama.cpp's logger can drop its last lines at exit, so an empty answer is
    tried again."""
    out = ""
    for _ in range(tries):
        p = subprocess.run(cmd, capture_output=True, text=True, errors="replace")
        if p.returncode != 0:
            sys.exit(f"{cmd[0]} failed: {p.stderr[-1500:]}")
        out = p.stdout
        if out.strip():
            return out
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--peer-bin", type=Path, default=Path("/work/peer/native/bin"))
    ap.add_argument("--model", default="both", choices=["smollm2", "gemma3", "both"])
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("-n", type=int, default=32)
    ap.add_argument("extra", nargs="*", help="flags given to both tools (after --)")
    args = ap.parse_args()
    names = list(MODELS) if args.model == "both" else [args.model]
    for name in names:
        path = MODELS[name]
        same = 0
        for prompt in PROMPTS:
            common = ["-m", str(path), "-p", prompt, "-n", str(args.n), "--temp", "0", "-t", str(args.threads),
                      "--no-display-prompt", *args.extra]
            theirs = run([str(args.peer_bin / "llama-completion"), *common, "-no-cnv", "--no-warmup"])
            ours = run([sys.executable, "-m", "llamacli", "run", *common])
            # llama-completion ends its output with "\n\n" (completion.cpp's LOG at exit), run with "\n"
            theirs = theirs[:-2] if theirs.endswith("\n\n") else theirs
            ours = ours[:-1] if ours.endswith("\n") else ours
            ok = theirs == ours
            same += ok
            print(f"{name}: {'same' if ok else 'DIFFERENT'}: {prompt[:50]!r}")
            if not ok:
                print(f"    llama.cpp: {theirs[:160]!r}\n    llamacli:  {ours[:160]!r}")
        print(f"{name}: {same} of {len(PROMPTS)} continuations identical (against {args.peer_bin})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
