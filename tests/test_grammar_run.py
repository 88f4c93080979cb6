"""`llamacli run --grammar / -j` against llama.cpp's llama-completion on the real models.

tests/golden/grammar/completions.json comes from scripts/make_grammar_completion_reference.py:
llama-completion (the AVX2 build whose decode path llamacli reproduces) with the same prompt,
grammar or schema, greedy and seeded sampling, one token per decode. The text must be the same
to the byte, so the grammar's verdicts, the resampling after a rejected pick and its second RNG
draw all have to be llama.cpp's.
"""

import json
from pathlib import Path

import pytest

from llamacli.cli import main

GOLDEN = Path(__file__).parent / "golden"
CASES = json.loads((GOLDEN / "grammar" / "completions.json").read_text())


@pytest.mark.real
@pytest.mark.parametrize("case", CASES, ids=[f"{c['model']}-{c['name']}" for c in CASES])
def test_completion_matches_llama_cpp(case, request, capsys):
    model = request.getfixturevalue(f"{case['model']}_path")
    # llama-completion ran with -fa off (scripts/make_grammar_completion_reference.py)
    code = main(["run", "-m", str(model), "-p", case["prompt"], "--no-display-prompt", *case["args"], "-fa", "off"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert out == case["text"] + "\n"


def test_golden_covers_both_models_modes_and_kinds():
    names = {(c["model"], c["name"].rsplit("-", 1)[1]) for c in CASES}
    assert names == {(m, mode) for m in ("smollm2", "gemma3") for mode in ("greedy", "seed42")}
    assert any("-j" in c["args"] for c in CASES) and any("--grammar" in c["args"] for c in CASES)
    assert any(c["eog"] for c in CASES)  # some end because the grammar is complete


@pytest.mark.real
def test_conversation_reply_follows_the_grammar_each_turn(smollm2_path, capsys, monkeypatch):
    """-cnv: every reply starts the grammar afresh (llama-server builds a new grammar sampler per
    request), so two turns both answer with a bare yes or no."""
    import io
    monkeypatch.setattr("sys.stdin", io.StringIO("Is water wet?\nIs fire cold?\n"))
    code = main(["run", "-m", str(smollm2_path), "-cnv", "-n", "8", "--temp", "0", "-c", "512",
                 "--grammar", 'root ::= ("yes" | "no") "."'])
    out, err = capsys.readouterr()
    assert code == 0, err
    replies = [line for line in out.splitlines() if line]
    assert len(replies) == 2 and all(r in ("yes.", "no.") for r in replies), out


def test_bad_grammar_and_schema_are_one_line_errors(capsys, tmp_path):
    from synthetic import write_tiny_llama
    model = write_tiny_llama(tmp_path / "tiny.gguf")
    cases = [
        (["--grammar", 'root ::= "a" | ('], "error parsing grammar: rule 'root'"),
        (["--grammar", 'start ::= "a"'], "grammar does not contain a 'root' symbol"),
        (["-j", '{"type": "text"}'], "JSON schema conversion failed: JSON schema error at #: unrecognized type text"),
        (["-j", "{not json"], "the JSON schema is not valid JSON"),
        (["--grammar", 'root ::= "a"', "-j", "{}"], "give one of --grammar, -j, not several"),
        (["--grammar-file", str(tmp_path / "missing.gbnf")], "cannot read the grammar file"),
    ]
    for args, msg in cases:
        code = main(["run", "-m", str(model), "-p", "x", "-n", "2", *args])
        out, err = capsys.readouterr()
        assert code == 1, (args, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and msg in lines[0], (args, err)
        assert "Traceback" not in err
