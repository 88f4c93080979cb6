"""Every BPE pre-tokenizer type llama.cpp knows, against llama.cpp's own llama-tokenize.

For each `tokenizer.ggml.pre` name in llama_vocab::impl::load, a vocab-only GGUF is built from
SmolLM2 (its general.* and tokenizer.* metadata, the name written into tokenizer.ggml.pre) and
the corpus (plus strings aimed at the pre-tokenizers) tokenized in both special-token modes;
tests/golden/pretokenizers.json holds llama.cpp's ids for the same files
(scripts/make_pretokenizer_reference.py). SmolLM2's merges hide some differences between
splits, so the words themselves are compared too, through a probe vocabulary that gives one
token per word.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from llamacli.cli import main
from llamacli.errors import LlamacliError
from llamacli.gguf_io import open_gguf
from llamacli.tokenizer import load_tokenizer
from llamacli.tokenizer.pretokenize import KNOWN_PRE_NAMES, PRE_NAMES, pre_tokenizer, split_words
from llamacli.tokenizer.vocab import load_vocab

from vocab_copy import PRE_KEY, write_vocab_gguf

GOLDEN = Path(__file__).parent / "golden"
REFERENCE = json.loads((GOLDEN / "pretokenizers.json").read_text())
# known to llama.cpp, refused here: their BPE runs on raw UTF-8 (byte_encode = false)
REFUSED = ("gemma4", "granite-embed-multi-311m", "sarvam-moe", "whitespace")
SUPPORTED = [n for n in REFERENCE["names"] if n not in REFUSED]
@pytest.fixture(scope="module")
def corpus():
    """The shared corpus, then the script's strings aimed at the pre-tokenizers."""
    raw = (GOLDEN / "corpus.json").read_bytes()
    assert hashlib.sha256(raw).hexdigest() == REFERENCE["corpus_sha256"], "corpus changed: rerun the script"
    return json.loads(raw) + REFERENCE["extra"]


def _expected(entry: dict, key: str) -> list[list[int]]:
    chars = REFERENCE["index_chars"]
    return [REFERENCE["variants"][i][chars.index(c)] for i, c in enumerate(entry[key])]


def _compare(tok, corpus, entry) -> dict[str, list[int]]:
    """Indexes of the corpus strings whose ids differ from llama.cpp's, per mode."""
    wrong = {}
    for key, parse_special in (("special", True), ("no_special", False)):
        want = _expected(entry, key)
        wrong[key] = [i for i, text in enumerate(corpus)
                      if tok.encode(text, add_special=False, parse_special=parse_special) != want[i]]
    return wrong


def test_every_llama_cpp_name_is_known():
    assert len(REFERENCE["names"]) > 80
    assert set(KNOWN_PRE_NAMES) == set(REFERENCE["names"])
    assert set(PRE_NAMES) == set(SUPPORTED)
    assert all(n in REFERENCE["types"] for n in REFERENCE["names"])


@pytest.mark.real
@pytest.mark.parametrize("name", SUPPORTED)
def test_ids_match_llama_cpp(name, corpus, smollm2_path, tmp_path):
    entry = REFERENCE["types"][name]
    path = write_vocab_gguf(smollm2_path, tmp_path / "vocab.gguf", name)
    tok = load_tokenizer(open_gguf(path))
    wrong = _compare(tok, corpus, entry)
    for key, bad in wrong.items():
        assert not bad, (f"{name} ({key}): {len(bad)}/{len(corpus)} strings differ, first {corpus[bad[0]]!r}: "
                         f"{tok.encode(corpus[bad[0]], False, key == 'special')} != {_expected(entry, key)[bad[0]]}")
    # add_special as llama-tokenize applies it (SmolLM2 says add_bos_token false)
    text = "Hello world"
    ids = tok.encode(text, add_special=False)
    assert tok.encode(text, add_special=True) == entry["prefix"] + ids + entry["suffix"]
    # the pre type's own BOS default (what a file without tokenizer.ggml.add_bos_token gets)
    assert bool(pre_tokenizer(name).add_bos) == entry["add_bos_default"]


@pytest.mark.real
@pytest.mark.parametrize("name", [n for n in SUPPORTED if REFERENCE["types"][n]["add_bos_default"]][:3]
                         + ["tekken", "chameleon", "default", "smollm"])
def test_bos_default_without_add_bos_token(name, smollm2_path, tmp_path):
    path = write_vocab_gguf(smollm2_path, tmp_path / "nobos.gguf", name, drop=("tokenizer.ggml.add_bos_token",))
    assert load_vocab(open_gguf(path)).add_bos == REFERENCE["types"][name]["add_bos_default"]


@pytest.mark.parametrize("name", SUPPORTED)
def test_splits_match_llama_cpp(name, corpus):
    """The words themselves, from llama.cpp's split probe: a vocabulary in which every word of
    these strings is one token, so its ids spell the split (see the script). No model needed."""
    entry = REFERENCE["types"][name]
    chars, probe = REFERENCE["index_chars"], REFERENCE["probe"]
    pre = pre_tokenizer(name)
    wrong = []
    for j, i in enumerate(probe["strings"]):
        want = probe["splits"][j][chars.index(entry["splits"][j])]
        got = [len(w) for w in split_words(corpus[i], pre)]
        if got != want:
            wrong.append((corpus[i], got, want))
    assert not wrong, f"{name}: {len(wrong)}/{len(probe['strings'])} splits differ, first {wrong[0]!r}"


@pytest.mark.real
def test_missing_pre_type_is_default(corpus, smollm2_path, tmp_path):
    """No tokenizer.ggml.pre: llama.cpp warns and uses 'default'."""
    assert pre_tokenizer(None) == pre_tokenizer("") == pre_tokenizer("default")
    path = write_vocab_gguf(smollm2_path, tmp_path / "vocab.gguf", None)
    assert open_gguf(path).get(PRE_KEY) is None
    tok = load_tokenizer(open_gguf(path))
    assert _compare(tok, corpus, REFERENCE["missing"]) == {"special": [], "no_special": []}
    for key in ("special", "no_special"):  # the same ids as a file that says 'default'
        assert REFERENCE["missing"][key] == REFERENCE["types"]["default"][key]
    assert tok.vocab.clean_spaces and not tok.add_bos
    assert REFERENCE["missing"]["splits"] == REFERENCE["types"]["default"]["splits"]


def _cli_tokenize(capsys, path: Path):
    code = main(["tokenize", "-m", str(path), "-p", "Hello world"])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.real
def test_unknown_pre_type_is_refused_in_one_line(capsys, smollm2_path, tmp_path):
    name = REFERENCE["unknown"]["name"]
    path = write_vocab_gguf(smollm2_path, tmp_path / "vocab.gguf", name)
    code, out, err = _cli_tokenize(capsys, path)
    assert code != 0 and out == ""
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    # llama.cpp: "unknown pre-tokenizer type: 'no-such-pre-tokenizer'"
    assert REFERENCE["unknown"]["error"] in err


@pytest.mark.real
@pytest.mark.parametrize("name", REFUSED)
def test_unsupported_llama_cpp_types_are_refused_by_name(name, capsys, smollm2_path, tmp_path):
    assert name in REFERENCE["names"]
    with pytest.raises(LlamacliError, match=f"'{name}'.*not supported"):
        pre_tokenizer(name)
    path = write_vocab_gguf(smollm2_path, tmp_path / "vocab.gguf", name)
    code, out, err = _cli_tokenize(capsys, path)
    assert code != 0 and out == ""
    assert len(err.splitlines()) == 1 and f"'{name}'" in err and "Traceback" not in err


@pytest.mark.parametrize("name, text, words", [
    # digit grouping (unicode_regex_split_custom_afmoe): what precedes a run joins its first
    # group, which the next expression then cuts off
    ("tiny_aya", "ab1234567", ["ab", "1", "234", "567"]),
    ("afmoe", "ab1234 x", ["ab", "1", "234", " x"]),
    ("superbpe", "1234567 x123456", ["1", "234", "567", " x", "123", "456"]),  # empty lookahead matches
    # Kimi-K2's splitter: Han apart, contractions after a word, marks are no letters
    ("kimi-k2", "中文English's 中", ["中文", "English's", " ", "中"]),
    ("kimi-k2", "HELLO\u0301x", ["HELLO", "\u0301x"]),
    # Qwen-3.5 keeps combining marks with their letters, Qwen-2 does not
    ("qwen35", "e\u0301 a\u0301b", ["e\u0301", " a\u0301b"]),
    ("qwen2", "e\u0301 a\u0301b", ["e", "\u0301", " a", "\u0301b"]),
    ("laguna", "a\n\nb c", ["a", "\n\n", "b", " c"]),                         # newline runs first
    ("jais-2", "a" + " " * 5 + "b", ["a", "    ", " b"]),                      # \s{4}(?!\S) before \s{1}
    ("deepseek-llm", "ab  ", ["ab", "  "]),                                   # \s+$ at the end of the text
])
def test_split_words(name, text, words):
    assert split_words(text, pre_tokenizer(name)) == words
