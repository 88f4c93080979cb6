"""Grammar-constrained completions from llama.cpp's own llama-completion (the prebuilt AVX2
build whose decode path llamacli reproduces bit for bit): GBNF grammars (--grammar) and JSON
schemas (-j), greedy and seeded sampling, on both real models.

    python scripts/make_grammar_completion_reference.py

Each case runs with -b 1 -ub 1 -fa off -t 2 -n 48 --no-display-prompt -no-cnv, so the prompt
goes through the one-token decode path. llama-completion prints the text of the picks on
stdout, then " [end of text]\n" if it stopped on an end-of-generation token, then two more
newlines at exit; its asynchronous logger may lose the last lines, so an output without the
final newlines is run again, and every case runs until two complete runs agree.

Writes tests/golden/grammar/completions.json: a list of {model, name, prompt, args, text, eog}.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path("/work/peer/avx2/bin/llama-completion")
GRAMMARS = Path("/work/peer/llama_cpp_python-0.3.36/vendor/llama.cpp/grammars")
MODELS = {"smollm2": "SmolLM2-135M-Instruct.Q4_1.gguf", "gemma3": "gemma-3-270m-q4_k_m.gguf"}
COMMON = ["-n", "48", "-b", "1", "-t", "2"]  # the flags llamacli run shares with llama-completion
LLAMA_ONLY = ["-ub", "1", "-fa", "off", "--no-display-prompt", "-no-cnv"]
MODES = {"greedy": ["--temp", "0"], "seed42": ["--temp", "0.8", "-s", "42"]}
END = " [end of text]\n"
TAIL = "\n\n"  # what llama-completion prints at exit

CASES = [
    ("yes_no", "Is the sky blue? Answer:", ["--grammar", 'root ::= " " ("yes" | "no") "."']),
    ("number_list", "The first five prime numbers are",
     ["--grammar", 'root ::= " [" num (", " num)* "]"\nnum ::= [0-9]+']),
    ("date", "The first moon landing (YYYY-MM-DD) happened on",
     ["--grammar", 'root ::= " " [0-9]{4} "-" [0-1] [0-9] "-" [0-3] [0-9] "."']),
    ("quote", "A famous quote:", ["--grammar", 'root ::= " \\"" [^"\\n]{1,40} "\\""']),
    ("arithmetic", "Compute 12 plus 7 times 3:", ["--grammar", (GRAMMARS / "arithmetic.gbnf").read_text()]),
    ("person_schema", "A person described as JSON:",
     ["-j", json.dumps({"type": "object",
                        "properties": {"name": {"type": "string", "maxLength": 20},
                                       "age": {"type": "integer", "minimum": 0, "maximum": 120}},
                        "required": ["name", "age"], "additionalProperties": False})]),
    ("colors_schema", "My favourite colours, as a JSON list:",
     ["-j", json.dumps({"type": "array", "items": {"enum": ["red", "green", "blue"]}, "minItems": 1, "maxItems": 3})]),
]


def run_once(model: str, prompt: str, args: list[str]) -> str:
    cmd = [str(BIN), "-m", str(Path.home() / ".cache" / "llamacli" / model), "-p", prompt,
           *COMMON, *LLAMA_ONLY, *args]
    r = subprocess.run(cmd, capture_output=True, check=True)
    return r.stdout.decode("utf-8")


def stable_output(model: str, prompt: str, args: list[str]) -> str:
    seen: list[str] = []
    for _ in range(6):
        out = run_once(model, prompt, args)
        if not out.endswith(TAIL):
            continue  # the logger lost the end
        if out in seen:
            return out
        seen.append(out)
    raise SystemExit(f"llama-completion gave no two equal outputs for {prompt!r} {args}")


def main() -> None:
    out = []
    for model_name, model in MODELS.items():
        for name, prompt, gargs in CASES:
            for mode, margs in MODES.items():
                args = [*COMMON, *margs, *gargs]
                text = stable_output(model, prompt, [*margs, *gargs])[: -len(TAIL)]
                eog = text.endswith(END)
                if eog:
                    text = text[: -len(END)]
                out.append({"model": model_name, "name": f"{name}-{mode}", "prompt": prompt, "args": args,
                            "text": text, "eog": eog})
                print(model_name, name, mode, repr(text), eog, file=sys.stderr)
    dest = ROOT / "tests" / "golden" / "grammar" / "completions.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
