"""`run` with its defaults (flash attention on, the prompt in one batch) against llama-completion
with its own, greedy, 32 tokens, on ten prompts per real model (tests/golden/greedy_defaults.json,
scripts/make_greedy_defaults_reference.py, from the AVX2 build and the native AVX-512 build).

The two builds disagree with each other on most of these continuations, so each is checked at
the CPU level this machine takes (kernels/cpu.py), or at avx2 where no golden build has it."""

import json

import pytest

from llamacli.cli import main
from llamacli.kernels import cpu

G = None


def _golden(golden):
    global G
    if G is None:
        G = json.loads((golden / "greedy_defaults.json").read_text())
    return G


@pytest.mark.parametrize("model", ["smollm2", "gemma3"])
def test_greedy_text_equals_llama_completions_defaults(model, request, golden, capsys, monkeypatch):
    data = _golden(golden)
    levels = data["models"][model]
    level = cpu.detect() if cpu.detect() in levels else "avx2"
    monkeypatch.setenv(cpu.ENV, level)
    path = request.getfixturevalue(f"{model}_path")
    same = []
    for prompt, want in zip(data["prompts"], levels[level]):
        code = main(["run", "-m", str(path), "-p", prompt, *data["args"]])
        out, err = capsys.readouterr()
        assert code == 0, err
        same.append(out[:-1] == want)  # run ends with one newline, llama-completion with two (dropped)
    print(f"{model} at {level}: {sum(same)} of {len(same)} continuations identical")
    assert all(same), [p for p, ok in zip(data["prompts"], same) if not ok]
