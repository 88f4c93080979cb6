"""`llamacli tokenize`, driven through the real entry point like a user would."""

from __future__ import annotations

import io
import json

import pytest

from llamacli.cli import main
from llamacli.cli.tokenize import process_escapes


def _run(capsys, argv, stdin=None, monkeypatch=None):
    if stdin is not None:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = main(["tokenize", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def _golden_ids(golden, text, parse_special=True):
    corpus = json.loads((golden / "corpus.json").read_text())
    entry = json.loads((golden / "smollm2" / "tokens.json").read_text())["entries"][corpus.index(text)]
    return entry["special" if parse_special else "no_special"]


@pytest.mark.real
def test_default_listing_like_llama_tokenize(capsys, smollm2_path, golden):
    code, out, err = _run(capsys, ["-m", str(smollm2_path), "-p", "Hello world"])
    assert code == 0, err
    ids = _golden_ids(golden, "Hello world")
    assert out.splitlines() == [f"{ids[0]:6d} -> 'Hello'", f"{ids[1]:6d} -> ' world'"]


@pytest.mark.real
def test_ids_from_file_and_flags(capsys, smollm2_path, golden, tmp_path):
    text = "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n"
    f = tmp_path / "prompt.txt"
    f.write_text(text, encoding="utf-8")
    code, out, err = _run(capsys, ["-m", str(smollm2_path), "-f", str(f), "--ids"])
    assert code == 0, err
    assert out == f"{_golden_ids(golden, text)}\n"
    code, out, err = _run(capsys, ["-m", str(smollm2_path), "-f", str(f), "--ids", "--no-parse-special",
                                   "--no-bos", "--show-count"])
    assert code == 0, err
    ids = _golden_ids(golden, text, parse_special=False)
    assert out == f"{ids}\nTotal number of tokens: {len(ids)}\n"


@pytest.mark.real
def test_jsonl_from_stdin(capsys, monkeypatch, smollm2_path, golden):
    texts = ["Hello world", "", "I'M here", "<|endoftext|>"]
    stdin = "".join(json.dumps(t) + "\n" for t in texts)
    code, out, err = _run(capsys, ["-m", str(smollm2_path), "--jsonl"], stdin, monkeypatch)
    assert code == 0, err
    assert [json.loads(line) for line in out.splitlines()] == [_golden_ids(golden, t) for t in texts]


@pytest.mark.parametrize("argv, stdin, message", [
    (["-m", "{model}", "--jsonl"], '"ok"\n{not json\n', "<stdin>:2: not valid JSON"),
    (["-m", "{model}", "--jsonl"], '"ok"\n42\n', "<stdin>:2: expected a JSON string"),
    (["-m", "{model}", "-f", "{missing}"], None, "no such file"),
    (["-m", "{missing}", "-p", "hi"], None, "no such file"),
    (["-m", "{notgguf}", "-p", "hi"], None, "not a GGUF file"),
    (["-m", "{model}"], None, "nothing to tokenize"),
    (["-m", "{model}", "-p", "a", "-f", "{missing}"], None, "not both"),
])
def test_bad_input_is_one_line(capsys, monkeypatch, tmp_path, argv, stdin, message):
    notgguf = tmp_path / "notes.txt"
    notgguf.write_text("just some text, not a model\n")
    names = {"model": str(notgguf), "missing": str(tmp_path / "missing.bin"), "notgguf": str(notgguf)}
    code, out, err = _run(capsys, [a.format(**names) for a in argv], stdin, monkeypatch)
    assert code != 0
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("llamacli: error:") and message in lines[0], err
    assert "Traceback" not in err


def test_process_escapes_like_llama_cpp():
    assert process_escapes(r"a\nb\tc\\d\'e\"f") == "a\nb\tc\\d'e\"f"
    assert process_escapes(r"\x41\xe2\x82\xac!") == "A€!"
    assert process_escapes(r"\q \x4") == r"\q \x4"      # unknown escapes stay as written
