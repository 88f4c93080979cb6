"""The tokenizers against llama.cpp: golden ids, pieces and special ids from llama-cpp-python."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llamacli.errors import LlamacliError
from llamacli.gguf_io import open_gguf
from llamacli.tokenizer import load_tokenizer
from llamacli.tokenizer.pretokenize import PRE_NAMES, pre_tokenizer, split_words
from llamacli.tokenizer.stream import StreamDecoder
from llamacli.tokenizer.tokenizer import _clean_spaces
from llamacli.tokenizer.unicode import LETTER, UNDEFINED, WHITESPACE, byte_to_char, codepoint_flags

MODELS = ["smollm2", "gemma3"]


@pytest.fixture(scope="module")
def tokenizers(smollm2_path, gemma3_path):
    return {"smollm2": load_tokenizer(open_gguf(smollm2_path)),
            "gemma3": load_tokenizer(open_gguf(gemma3_path))}


@pytest.fixture(scope="module")
def corpus(golden):
    return json.loads((golden / "corpus.json").read_text())


def _tokens(golden, model):
    return json.loads((golden / model / "tokens.json").read_text())


# -- ids -------------------------------------------------------------------------------------

@pytest.mark.real
@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("parse_special", [True, False])
def test_corpus_ids_match_llama_cpp(tokenizers, corpus, golden, model, parse_special):
    tok = tokenizers[model]
    ref = _tokens(golden, model)
    assert len(ref["entries"]) == len(corpus) >= 200
    key = "special" if parse_special else "no_special"
    wrong = [(text, tok.encode(text, add_special=True, parse_special=parse_special), e[key])
             for text, e in zip(corpus, ref["entries"])
             if tok.encode(text, add_special=True, parse_special=parse_special) != e[key]]
    assert not wrong, f"{len(wrong)} strings differ, first: {wrong[0]!r}"


@pytest.mark.real
@pytest.mark.parametrize("model", MODELS)
def test_reference_text_and_prompts_match(tokenizers, golden, model):
    """The ids llama.cpp evaluated for the logits and greedy golden data."""
    tok = tokenizers[model]
    text = (golden / "reference.txt").read_text(encoding="utf-8")
    ref = np.load(golden / model / "logits.npz")["tokens"]
    assert tok.encode(text, add_special=True, parse_special=False)[:len(ref)] == ref.tolist()
    for run in json.loads((golden / model / "greedy.json").read_text())["runs"]:
        assert tok.encode(run["prompt"], add_special=True, parse_special=True) == run["prompt_ids"]


@pytest.mark.real
@pytest.mark.parametrize("model", MODELS)
def test_special_ids_and_flags(tokenizers, golden, model):
    tok, ref = tokenizers[model], _tokens(golden, model)
    assert tok.n_vocab == ref["n_vocab"]
    assert (tok.bos_id, tok.eos_id, tok.add_bos, tok.add_eos) == (ref["bos"], ref["eos"], ref["add_bos"], ref["add_eos"])
    assert sorted(tok.eog_ids) == ref["eog_ids"]
    assert all(tok.is_eog(i) for i in ref["eog_ids"])
    assert not tok.is_eog(ref["entries"][6]["no_special"][-1])  # "Hello": a plain word


@pytest.mark.real
def test_add_special_follows_metadata(tokenizers):
    sm, gm = tokenizers["smollm2"], tokenizers["gemma3"]
    assert not sm.add_bos and sm.encode("Hi") == sm.encode("Hi", add_special=False)
    assert gm.add_bos and gm.encode("Hi") == [gm.bos_id] + gm.encode("Hi", add_special=False)
    assert gm.encode("") == [gm.bos_id] and gm.encode("", add_special=False) == []


@pytest.mark.real
def test_parse_special_switch(tokenizers):
    sm = tokenizers["smollm2"]
    on = sm.encode("<|im_start|>user", parse_special=True)
    off = sm.encode("<|im_start|>user", parse_special=False)
    assert on[0] == sm.vocab.token_to_id["<|im_start|>"] and len(off) > len(on)


# -- pieces and detokenization ---------------------------------------------------------------

@pytest.mark.real
@pytest.mark.parametrize("model", MODELS)
def test_pieces_match_llama_cpp(tokenizers, golden, model):
    tok, ref = tokenizers[model], _tokens(golden, model)
    assert len(ref["pieces"]) > 1000
    wrong = [(i, tok.token_to_piece(int(i), False), tok.token_to_piece(int(i), True))
             for i, (plain, special) in ref["pieces"].items()
             if tok.token_to_piece(int(i), False).hex() != plain
             or tok.token_to_piece(int(i), True).hex() != special]
    assert not wrong, f"{len(wrong)} pieces differ, first: {wrong[0]!r}"


@pytest.mark.real
@pytest.mark.parametrize("model", MODELS)
def test_detokenize_matches_llama_cpp(tokenizers, golden, model):
    tok, ref = tokenizers[model], _tokens(golden, model)
    for e in ref["entries"]:
        assert tok.detokenize(e["no_special"], special=False).hex() == e["detok"]
        assert tok.detokenize(e["special"], special=True).hex() == e["detok_special"]


def _representable(tok, text: str) -> bool:
    """Byte-level BPE can only spell bytes its vocabulary has: SmolLM2 lacks 21 of the 256
    (0x04, 0xF5..0xFF, ...), and llama.cpp silently drops them, as the golden ids show.
    SentencePiece reads a literal ▁ in the text as its own escaped space."""
    if tok.kind != "bpe":
        return "\u2581" not in text
    bc, t2i = byte_to_char(), tok.vocab.token_to_id
    return all(bc[b] in t2i for b in text.encode("utf-8"))


@pytest.mark.real
@pytest.mark.parametrize("model", MODELS)
def test_round_trip(tokenizers, corpus, model):
    tok = tokenizers[model]
    checked = 0
    for text in corpus:
        if _representable(tok, text):
            assert tok.decode(tok.encode(text, parse_special=False)) == text
            checked += 1
    assert checked > 250


@pytest.mark.real
def test_unrepresentable_bytes_are_dropped(tokenizers):
    sm = tokenizers["smollm2"]
    assert not _representable(sm, "\x1d")
    assert sm.decode(sm.encode("a\x1db", parse_special=False)) == "ab"


@pytest.mark.real
@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=60))
def test_round_trip_random_text(tokenizers, text):
    for tok in tokenizers.values():
        if _representable(tok, text):
            assert tok.decode(tok.encode(text, parse_special=False)) == text


def test_clean_spaces_passes():
    # llama_detokenize's clean-up, worked through its three loops by hand
    assert _clean_spaces(b"Hello , world . ok ? yes !") == b"Hello, world. ok? yes!"
    assert _clean_spaces(b"a ' b") == b"a'b"
    assert _clean_spaces(b"it 's I 'm we 're you 've") == b"it's I'm we're you've"
    assert _clean_spaces(b"do n 't we 'll 'd") == b"do n 't we 'll 'd"
    assert _clean_spaces(b"") == b""


# -- streaming -------------------------------------------------------------------------------

class _Pieces:
    """A stand-in tokenizer whose tokens are raw byte strings."""

    def __init__(self, pieces):
        self.pieces = pieces

    def token_to_piece(self, tid, special=False):
        return self.pieces[tid]


def test_stream_decoder_holds_partial_characters():
    euro = "€".encode()          # 3 bytes
    smile = "🙂".encode()        # 4 bytes
    dec = StreamDecoder(_Pieces([b"a", euro[:1], euro[1:], smile[:2], smile[2:3], smile[3:] + b"b"]))
    out = [dec.feed(i) for i in range(6)]
    assert out == ["a", "", "€", "", "", "🙂b"]
    assert dec.flush() == ""


def test_stream_decoder_flushes_broken_bytes_as_replacement():
    dec = StreamDecoder(_Pieces([b"x\xe2\x82", b"\xff", b"y\xf0"]))
    assert dec.feed(0) == "x"
    assert dec.feed(1) == "\ufffd\ufffd"  # the cut-short euro sign, then the stray byte
    assert dec.feed(2) == "y"
    assert dec.flush() == "\ufffd"


@pytest.mark.real
@pytest.mark.parametrize("model", MODELS)
def test_stream_decoder_on_real_tokens(tokenizers, model):
    tok = tokenizers[model]
    text = "日本語 ❤️‍🔥 na\u00efve 🇫🇷 👨‍👩‍👧‍👦 𓀀 end"  # 𓀀: Gemma spells it <0xF0><0x93><0x80><0x80>
    ids = tok.encode(text, add_special=False)
    dec = tok.stream_decoder()
    chunks = [dec.feed(i) for i in ids]
    assert "" in chunks                        # some character did span several tokens
    assert all("\ufffd" not in c for c in chunks)
    assert "".join(chunks) + dec.flush() == text


# -- pre-tokenizers and the Unicode table -----------------------------------------------------

def test_unknown_pre_tokenizer_is_an_error():
    with pytest.raises(LlamacliError, match="no-such-pre"):
        pre_tokenizer("no-such-pre")


class _FakeGGUF:
    """Just enough of GGUFFile for load_tokenizer: a three-token BPE vocabulary."""

    path = "fake.gguf"
    fields: dict = {}

    def __init__(self, meta):
        self.meta = meta

    def get(self, key, default=None):
        return self.meta.get(key, default)

    def strings(self, key):
        return self.meta.get(key)

    def array(self, key, dtype=None):
        v = self.meta.get(key)
        return None if v is None else np.asarray(v, dtype=dtype)


def _fake(pre):
    return _FakeGGUF({"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": pre,
                      "tokenizer.ggml.tokens": ["a", "b", "ab"], "tokenizer.ggml.merges": ["a b"],
                      "tokenizer.ggml.token_type": [1, 1, 1]})


def test_unknown_pre_tokenizer_in_model_names_it():
    with pytest.raises(LlamacliError, match="'made-up-pre'"):
        load_tokenizer(_fake("made-up-pre"))
    assert load_tokenizer(_fake("gpt-2")).encode("abba") == [2, 1, 0]


@pytest.mark.parametrize("name", ["smollm", "gpt-2", "llama-bpe", "llama3", "qwen2", "default"])
def test_required_pre_tokenizers_exist(name):
    assert name in PRE_NAMES and pre_tokenizer(name).expressions


@pytest.mark.parametrize("name, text, words", [
    # llama.cpp's own state machines, not a regex engine: see unicode_regex_split_custom_*
    ("gpt-2", "Hello  world's", ["Hello", " ", " world", "'s"]),
    ("gpt-2", "I'M ok", ["I", "'", "M", " ok"]),                 # GPT-2: contractions are case-sensitive
    ("llama-bpe", "I'M ok", ["I", "'M", " ok"]),                 # Llama-3: either case
    ("llama-bpe", "1234567", ["123", "456", "7"]),
    ("qwen2", "2024", ["2", "0", "2", "4"]),
    ("llama-bpe", "a \n\n b", ["a", " \n\n", " b"]),
    ("smollm", "ab12 c", ["ab", "1", "2", " c"]),               # \p{N} splits digits first
    ("gpt-2", "x   ", ["x", "   "]),                             # trailing spaces stay one word
])
def test_split_words(name, text, words):
    assert split_words(text, pre_tokenizer(name)) == words


def test_unicode_table_is_llama_cpp_s():
    flags = codepoint_flags()
    assert flags[ord("a")] & LETTER and flags[0x31350] & LETTER      # Unicode 15.0 CJK ext H
    assert flags[0x2EBF0] & LETTER                                   # Unicode 15.1 CJK ext I
    assert flags[0x1E5D0] & UNDEFINED                                # Unicode 16.0: not yet known
    assert flags[0x3000] & WHITESPACE and not flags[0x1C] & WHITESPACE
    assert len(set(byte_to_char())) == 256 and byte_to_char()[ord(" ")] == "\u0120"
