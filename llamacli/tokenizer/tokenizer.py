"""The tokenizer the engine uses: llama_tokenize and llama_detokenize over one vocabulary.

`load_tokenizer(gf)` picks byte-level BPE (tokenizer.ggml.model "gpt2") or SentencePiece
("llama") and reads everything from the GGUF metadata. Token ids match llama.cpp's for the
same text and flags; tests/golden holds the proof, produced by llama-cpp-python.
"""

from __future__ import annotations

import re

from gguf import Keys

from ..errors import LlamacliError
from .bpe import BPE
from .pretokenize import pre_tokenizer
from .spm import spm_encode
from .stream import StreamDecoder
from .vocab import SPM_SPACE, Vocab, load_vocab, read_strings


class Tokenizer:
    def __init__(self, vocab: Vocab, bpe: BPE | None = None):
        self.vocab = vocab
        self._bpe = bpe
        sp = vocab.special
        self.n_vocab = vocab.n_vocab
        self.bos_id: int = sp["bos"]
        self.eos_id: int = sp["eos"]
        self.eot_id: int = sp["eot"]
        self.add_bos: bool = vocab.add_bos
        self.add_eos: bool = vocab.add_eos

    @property
    def kind(self) -> str:
        return "bpe" if self._bpe is not None else "spm"

    # -- text -> ids (llama_vocab::impl::tokenize) ---------------------------------------------

    def encode(self, text: str, add_special: bool = True, parse_special: bool = True) -> list[int]:
        v = self.vocab
        out: list[int] = []
        if add_special and v.add_bos:
            if self.bos_id < 0:
                raise LlamacliError("the model asks for a BOS token but defines none")
            out.append(self.bos_id)
        fragments = v.partition(text, parse_special)
        if self._bpe is None:
            prev_special = True  # the first fragment counts as following a special token
            for frag in fragments:
                if isinstance(frag, int):
                    out.append(frag)
                    prev_special = True
                    continue
                if v.add_space_prefix and prev_special:
                    frag = " " + frag
                spm_encode(v, frag.replace(" ", SPM_SPACE), out)
                prev_special = False
        else:
            for frag in fragments:
                if isinstance(frag, int):
                    out.append(frag)
                else:
                    self._bpe.encode(frag, out)
        if add_special and v.add_eos:
            if self.eos_id < 0:
                raise LlamacliError("the model asks for an EOS token but defines none")
            out.append(self.eos_id)
        return out

    # -- ids -> text --------------------------------------------------------------------------

    def token_to_piece(self, tid: int, special: bool = False) -> bytes:
        """llama_token_to_piece: control/unknown tokens are empty unless `special`."""
        if not 0 <= tid < self.n_vocab:
            raise LlamacliError(f"token id {tid} is outside the vocabulary (0..{self.n_vocab - 1})")
        return self.vocab.piece(tid, special)

    def detokenize(self, ids, special: bool = False) -> bytes:
        """llama_detokenize(remove_special=False, unparse_special=special), as bytes."""
        remove_space = self.vocab.add_space_prefix
        parts = []
        for tid in ids:
            p = self.token_to_piece(int(tid), special)
            if remove_space and p[:1] == b" ":
                p = p[1:]
            remove_space = False
            parts.append(p)
        text = b"".join(parts)
        return _clean_spaces(text) if self.vocab.clean_spaces else text

    def decode(self, ids, special: bool = False) -> str:
        return self.detokenize(ids, special).decode("utf-8", errors="replace")

    def is_eog(self, tid: int) -> bool:
        return self.vocab.is_eog(tid)

    @property
    def eog_ids(self) -> frozenset[int]:
        return self.vocab.eog_ids

    def stream_decoder(self, special: bool = False) -> StreamDecoder:
        return StreamDecoder(self, special)


_SPACE_BEFORE_PUNCT = re.compile(rb" (?=[?!.,])")


def _clean_spaces(text: bytes) -> bytes:
    """The three clean-up passes of llama_detokenize (clean_up_tokenization_spaces)."""
    # 1: " ?", " !", " .", " ," lose their space
    t = bytearray(_SPACE_BEFORE_PUNCT.sub(b"", text))
    # 2: a lone apostrophe between spaces loses both (in place, as llama.cpp: the skipped
    #    space is zeroed, which the next step then sees)
    n = len(t)
    total = 1 if n else 0
    i = 1
    while i < n:
        x = t[i]
        if x == 0x27 and i + 1 < n and t[i - 1] == 0x20 and t[i + 1] == 0x20:
            total -= 1
            i += 1
            t[i] = 0
        t[total] = x
        total += 1
        i += 1
    del t[total:]
    # 3: " 's", " 'm", " 're", " 've" lose their space
    n = len(t)
    total = 1 if n else 0
    for i in range(1, n):
        x = t[i]
        if t[i - 1] == 0x20 and x == 0x27 and i + 1 < n:
            x1 = t[i + 1]
            if x1 in b"sm":
                total -= 1
            elif x1 not in b"td" and i + 2 < n and (x1, t[i + 2]) in ((0x72, 0x65), (0x76, 0x65)):
                total -= 1
        t[total] = x
        total += 1
    del t[total:]
    return bytes(t)


def load_tokenizer(gf) -> Tokenizer:
    """The tokenizer of an open GGUF (`llamacli.gguf_io.GGUFFile`)."""
    vocab = load_vocab(gf)
    if vocab.model == "llama":
        return Tokenizer(vocab)
    merges = read_strings(gf, Keys.Tokenizer.MERGES)
    if merges is None:
        raise LlamacliError(f"{gf.path}: BPE tokenizer without {Keys.Tokenizer.MERGES}")
    return Tokenizer(vocab, BPE(vocab, merges, pre_tokenizer(gf.get(Keys.Tokenizer.PRE))))
