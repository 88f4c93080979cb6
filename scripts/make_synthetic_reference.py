"""Golden logits from llama.cpp for the tiny synthetic models of tests/synthetic.py (qwen2, and a
llama with an untied K-quant output), for architectures and weight mixes with no real file here.

Run with llamacli's interpreter; llama.cpp runs in a subprocess under the peer's interpreter
(llamacli must not import llama_cpp):

    python scripts/make_synthetic_reference.py [--peer /work/peer-venv/bin/python]

Writes tests/golden/synthetic/<name>.npz: the sha256 of the GGUF written (the test rebuilds it
and checks that it is the same file), the token ids, and llama.cpp's full float32 logits for
each position, one token per llama_decode (its decode path).
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from synthetic import SYNTHETIC_MODELS, synthetic_tokens, write_synthetic  # noqa: E402
sys.path.insert(0, str(ROOT / "scripts"))
from peer_decode import PEER  # noqa: E402

OUT = ROOT / "tests" / "golden" / "synthetic"



def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--peer", default="/work/peer-venv/bin/python", help="interpreter with llama_cpp 0.3.36")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name in SYNTHETIC_MODELS:
            path = write_synthetic(name, Path(tmp) / f"{name}.gguf")
            toks = synthetic_tokens(name)
            npy = Path(tmp) / f"{name}.npy"
            subprocess.run([args.peer, "-c", PEER, str(path), ",".join(map(str, toks)), str(npy)], check=True,
                           stderr=subprocess.DEVNULL)
            np.savez_compressed(OUT / f"{name}.npz", gguf_sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
                                tokens=np.array(toks, np.int32), logits=np.load(npy))
            print(f"{name}: {len(toks)} positions")


if __name__ == "__main__":
    main()
