"""JSON schema -> GBNF against llama.cpp's own converter, and the `llamacli grammar` command.

tests/golden/grammar/schemas.json comes from scripts/make_grammar_reference.py, which runs the
C++ json_schema_to_grammar of the prebuilt libllama-common (the vendored tree no longer has the
Python twin examples/json_schema_to_grammar.py). Our text must be the same byte for byte;
where llama.cpp refuses a schema, ours must refuse it with the same message on one line.
"""

import json
from pathlib import Path

import pytest

from llamacli.cli import main
from llamacli.errors import LlamacliError
from llamacli.grammar import compile_grammar
from llamacli.grammar.json_schema import json_schema_to_grammar

CASES = json.loads((Path(__file__).parent / "golden" / "grammar" / "schemas.json").read_text())


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_grammar_text_is_llama_cpps(case):
    want = case["grammar"]
    warnings = []
    if isinstance(want, dict):
        with pytest.raises(LlamacliError) as e:
            json_schema_to_grammar(case["schema"], warnings.append)
        assert str(e.value) == want["error"].replace(":\n", ": ", 1).replace("\n", "; ")
        return
    got = json_schema_to_grammar(case["schema"], warnings.append)
    assert got == want
    assert bool(warnings) == ("WARNING" in case.get("stderr", ""))
    compile_grammar(got)  # and the grammar itself parses


def test_golden_covers_the_keywords():
    text = json.dumps([c["schema"] for c in CASES])
    for kw in ("properties", "required", "additionalProperties", "enum", "const", "items", "prefixItems",
               "minItems", "maxItems", "minLength", "maxLength", "pattern", "format", "minimum", "maximum",
               "exclusiveMinimum", "exclusiveMaximum", "$ref", "anyOf", "oneOf", "allOf"):
        assert f'"{kw}"' in text, kw
    assert len(CASES) >= 25


def test_grammar_subcommand_prints_the_grammar(tmp_path, capsys):
    case = next(c for c in CASES if c["name"] == "object_required")
    f = tmp_path / "schema.json"
    f.write_text(json.dumps(case["schema"]))
    assert main(["grammar", "--json-schema", str(f)]) == 0
    out, err = capsys.readouterr()
    assert out == case["grammar"]


def test_grammar_subcommand_errors_are_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('{"type": "object", "properties": {"a": {"type": "string", "pattern": "^(x$"}}}')
    for args, msg in ((["--json-schema", str(bad)], "Invalid pattern ^(x$: unbalanced parentheses"),
                      (["--json-schema", str(tmp_path / "nope.json")], "cannot read the JSON schema file"),
                      ([], "give --json-schema FILE")):
        code = main(["grammar", *args])
        out, err = capsys.readouterr()
        assert code == 1 and out == ""
        lines = err.strip().splitlines()
        assert len(lines) == 1 and msg in lines[0], err
