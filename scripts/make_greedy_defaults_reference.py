"""Golden data for greedy text with llama.cpp's defaults: llama-completion's 32-token greedy
continuations of scripts/compare_greedy_text.py's ten prompts, on both real models, from two
builds of the same sdist (flash attention auto, -b 2048 -ub 512, the prompt in one batch).

    python scripts/make_greedy_defaults_reference.py avx2=/work/peer/avx2/bin avx512=/work/peer/native/bin

Writes tests/golden/greedy_defaults.json: per model and level the continuation text of each
prompt (llama-completion -p PROMPT -n 32 --temp 0 -t 2 --no-display-prompt -no-cnv), without
the two newlines llama-completion prints at the end.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from compare_greedy_text import MODELS, PROMPTS, run  # noqa: E402

OUT = ROOT / "tests" / "golden" / "greedy_defaults.json"
ARGS = ["-n", "32", "--temp", "0", "-t", "2", "--no-display-prompt"]


def main() -> int:
    data = {"args": ARGS, "prompts": PROMPTS, "models": {}}
    for spec in sys.argv[1:]:
        level, lib = spec.split("=", 1)
        for name, path in MODELS.items():
            texts = []
            for prompt in PROMPTS:
                out = run([str(Path(lib) / "llama-completion"), "-m", str(path), "-p", prompt, *ARGS, "-no-cnv",
                           "--no-warmup"])
                texts.append(out[:-2] if out.endswith("\n\n") else out)
            data["models"].setdefault(name, {})[level] = texts
            print(f"{level} {name}: {len(texts)} continuations", file=sys.stderr)
    OUT.write_text(json.dumps(data, ensure_ascii=False, indent=1))
    print(f"{OUT}: {OUT.stat().st_size} bytes", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
