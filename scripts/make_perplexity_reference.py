#!/usr/bin/env python3
"""Golden data for `llamacli perplexity`, made by llama.cpp's own llama-perplexity binary.

    python scripts/make_perplexity_reference.py [smollm2] [gemma3]

For each real model in the cache it runs

    llama-perplexity -m MODEL -f tests/golden/reference.txt -c 256 -t 2 [-fa off]

three times: with llama.cpp's defaults (batch 2048, so 8 chunks per llama_decode, flash
attention on where the CPU backend offers it), with ``-fa off`` (the non-flash attention path
our engine mirrors), and, for two chunks only, with ``-b 1 -fa off``: one token per
llama_decode, the decode path whose logits our engine reproduces bit for bit. From each run it records the running estimate printed after every chunk
(``[1]39.9077,[2]...``) and the final ``PPL = x +/- y`` into
``tests/golden/perplexity/<model>.json``.

The binary is taken from $LLAMA_PERPLEXITY (default /work/peer-build/bin/llama-perplexity).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from llamacli.fetch import sha256_of  # noqa: E402  (stdlib only: runs under the peer's interpreter too)

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("LLAMACLI_CACHE", Path.home() / ".cache" / "llamacli"))
BINARY = Path(os.environ.get("LLAMA_PERPLEXITY", "/work/peer-build/bin/llama-perplexity"))
TEXT = ROOT / "tests" / "golden" / "reference.txt"
GOLDEN = ROOT / "tests" / "golden" / "perplexity"
N_CTX = 256
THREADS = 2

MODELS = {"smollm2": "SmolLM2-135M-Instruct.Q4_1.gguf", "gemma3": "gemma-3-270m-q4_k_m.gguf"}
RUNS = {  # name -> extra arguments
    "default": [],
    "fa_off": ["-fa", "off"],
    # one token per llama_decode, non-flash attention: the path our engine matches bit for bit
    "decode": ["-b", "1", "-fa", "off", "--chunks", "2"],
}

CHUNK_RE = re.compile(r"\[(\d+)\]([0-9.]+|nan|inf),")
FINAL_RE = re.compile(r"Final estimate: PPL = ([0-9.]+) \+/- ([0-9.]+)")


def version() -> str:
    """The first line of `llama-perplexity --version`: 'version: 0.5.0-dev (build 1, commit 0c1e570)'."""
    p = subprocess.run([str(BINARY), "--version"], capture_output=True, text=True, check=False)
    return (p.stdout + p.stderr).splitlines()[0].removeprefix("version: ")


def run(model: Path, extra: list[str]) -> dict:
    args = [str(BINARY), "-m", str(model), "-f", str(TEXT), "-c", str(N_CTX), "-t", str(THREADS), *extra]
    print("+", " ".join(args), file=sys.stderr, flush=True)
    p = subprocess.run(args, capture_output=True, text=True, check=False)
    out = p.stdout + p.stderr
    final = FINAL_RE.search(out)
    if p.returncode != 0 or not final:
        sys.exit(f"llama-perplexity failed (exit {p.returncode}):\n{out[-3000:]}")
    chunks = CHUNK_RE.findall(p.stdout)
    assert [int(i) for i, _ in chunks] == list(range(1, len(chunks) + 1)), chunks
    return {
        "args": ["-c", str(N_CTX), "-t", str(THREADS), *extra],
        "ppl": float(final.group(1)),
        "ppl_stderr": float(final.group(2)),
        "n_chunks": len(chunks),
        "chunk_ppl": [float(v) for _, v in chunks],
    }


def main(names: list[str]) -> None:
    GOLDEN.mkdir(parents=True, exist_ok=True)
    for name in names or list(MODELS):
        model = CACHE / MODELS[name]
        if not model.exists():
            sys.exit(f"{model} is missing: run scripts/fetch_models.py {name}")
        doc = {
            "model": MODELS[name],
            "model_sha256": sha256_of(model),
            "text": TEXT.name,
            "text_sha256": sha256_of(TEXT),
            "n_ctx": N_CTX,
            "llama_cpp": version(),
            "runs": {run_name: run(model, extra) for run_name, extra in RUNS.items()},
        }
        path = GOLDEN / f"{name}.json"
        path.write_text(json.dumps(doc, indent=1) + "\n")
        r = doc["runs"]
        print(f"{path}: PPL {r['default']['ppl']} (default), {r['fa_off']['ppl']} (-fa off)", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1:])
