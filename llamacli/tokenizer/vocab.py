"""The vocabulary as llama.cpp loads it (llama_vocab::impl::load in src/llama-vocab.cpp).

Token texts, attributes and scores come from `tokenizer.ggml.*`; the special ids (BOS, EOS,
EOT, EOM, FIM ...) default per tokenizer model and are then overridden by metadata; the
end-of-generation set adds tokens recognised by their text. Special-token partitioning of a
prompt (tokenizer_st_partition) and llama_token_to_piece also live here, because both depend
only on the vocabulary, not on the BPE or SentencePiece algorithm.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np
from gguf import Keys

from ..errors import LlamacliError
from .unicode import char_to_byte

# llama_token_attr (include/llama.h): bit flags
ATTR_UNDEFINED = 0
ATTR_UNKNOWN = 1 << 0
ATTR_UNUSED = 1 << 1
ATTR_NORMAL = 1 << 2
ATTR_CONTROL = 1 << 3
ATTR_USER_DEFINED = 1 << 4
ATTR_BYTE = 1 << 5
ATTR_LSTRIP = 1 << 7
ATTR_RSTRIP = 1 << 8

# tokenizer.ggml.token_type (llama_token_type) -> attribute; anything else is UNDEFINED
_TYPE_TO_ATTR = {0: ATTR_UNDEFINED, 1: ATTR_NORMAL, 2: ATTR_UNKNOWN, 3: ATTR_CONTROL,
                 4: ATTR_USER_DEFINED, 5: ATTR_UNUSED, 6: ATTR_BYTE}

# Tokens llama.cpp recognises by their text (the "auto-detect" block of llama_vocab::load).
EOT_TEXTS = ("<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
             "<|end_of_text|>", "<EOT>", "_<EOT>", "[EOT]", "<｜end▁of▁sentence｜>",
             "<end_of_utterance>")
EOM_TEXTS = ("<|eom_id|>",)
FIM_TEXTS = {
    "fim_pre": ("<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<｜fim▁begin｜>", "<PRE>",
                "▁<PRE>", "<|code_prefix|>", "<|prefix|>"),
    "fim_suf": ("<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<｜fim▁hole｜>", "<SUF>",
                "▁<SUF>", "<|code_suffix|>", "<|suffix|>"),
    "fim_mid": ("<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<｜fim▁end｜>", "<MID>",
                "▁<MID>", "<|code_middle|>", "<|middle|>"),
    "fim_pad": ("<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"),
    "fim_rep": ("<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"),
    "fim_sep": ("<|file_sep|>",),
}
EOG_TEXTS = ("<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>",
             "<|calls|>", "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>",
             "_<EOT>", "[EOT]", "[EOS]", "<|end_of_text|>", "<end_of_utterance>", "<eos>",
             "<turn|>", "<|tool_response>", "<｜end▁of▁sentence｜>", "[e~[")

_SPECIAL_KEYS = {  # id field -> metadata key (deprecated prefix/suffix/middle keys come last)
    "bos": (Keys.Tokenizer.BOS_ID,), "eos": (Keys.Tokenizer.EOS_ID,),
    "eot": (Keys.Tokenizer.EOT_ID,), "eom": (Keys.Tokenizer.EOM_ID,),
    "unk": (Keys.Tokenizer.UNK_ID,), "sep": (Keys.Tokenizer.SEP_ID,),
    "pad": (Keys.Tokenizer.PAD_ID,), "mask": (Keys.Tokenizer.MASK_ID,),
    "fim_pre": (Keys.Tokenizer.FIM_PRE_ID, "tokenizer.ggml.prefix_token_id"),
    "fim_suf": (Keys.Tokenizer.FIM_SUF_ID, "tokenizer.ggml.suffix_token_id"),
    "fim_mid": (Keys.Tokenizer.FIM_MID_ID, "tokenizer.ggml.middle_token_id"),
    "fim_pad": (Keys.Tokenizer.FIM_PAD_ID,), "fim_rep": (Keys.Tokenizer.FIM_REP_ID,),
    "fim_sep": (Keys.Tokenizer.FIM_SEP_ID,),
}

SPM_SPACE = "\u2581"  # ▁, SentencePiece's visible space


@dataclass
class Vocab:
    model: str                    # tokenizer.ggml.model: "gpt2" (BPE) or "llama" (SPM)
    texts: list[str]              # (n_vocab,) token text as stored (byte-encoded for BPE)
    attrs: np.ndarray             # (n_vocab,) int32 llama_token_attr bits
    scores: np.ndarray | None     # (n_vocab,) float32, SPM merge priorities
    token_to_id: dict[str, int]
    special: dict[str, int]       # bos, eos, eot, ... -> id, or -1 (LLAMA_TOKEN_NULL)
    add_bos: bool
    add_eos: bool
    add_space_prefix: bool
    clean_spaces: bool
    eog_ids: frozenset[int]
    special_cache: list[int] = field(default_factory=list)  # partition order: longest text first
    _pieces: dict[int, bytes] = field(default_factory=dict)

    @property
    def n_vocab(self) -> int:
        return len(self.texts)

    # -- prompt partition (tokenizer_st_partition) --------------------------------------------

    def partition(self, text: str, parse_special: bool) -> list[str | int]:
        """Split out special tokens: raw text stays str, matched special tokens become ids.

        Each special token, longest text first, is searched in every raw fragment left so far
        and splits it at each non-overlapping occurrence, left to right. Control and unknown
        tokens only take part when parse_special is set; user-defined ones always do.
        """
        if not text:
            return []
        # only special tokens that can occur: their first two characters must be in the text
        keys = set(text)
        keys.update(text[i:i + 2] for i in range(len(text) - 1))
        candidates = sorted(c for k in keys & self._special_index.keys() for c in self._special_index[k])
        fragments: list[str | int] = [text]
        for _, tid, tok, attr in candidates:
            if not parse_special and attr & (ATTR_CONTROL | ATTR_UNKNOWN):
                continue
            if tok not in text:
                continue
            out: list[str | int] = []
            for frag in fragments:
                if isinstance(frag, int) or tok not in frag:
                    out.append(frag)
                    continue
                parts = frag.split(tok)
                for i, part in enumerate(parts):
                    if i > 0:
                        out.append(tid)
                    if attr & ATTR_LSTRIP and i + 1 < len(parts):
                        part = part.rstrip(" \t\n\v\f\r")
                    if attr & ATTR_RSTRIP and i > 0:
                        part = part.lstrip(" \t\n\v\f\r")
                    if part:
                        out.append(part)
            fragments = out
        return fragments

    @functools.cached_property
    def _special_index(self) -> dict[str, list[tuple[int, int, str, int]]]:
        """First two characters -> (partition order, id, text, attr) of the special tokens."""
        index: dict[str, list[tuple[int, int, str, int]]] = {}
        for order, tid in enumerate(self.special_cache):
            tok = self.texts[tid]
            index.setdefault(tok[:2], []).append((order, tid, tok, int(self.attrs[tid])))
        return index

    # -- detokenization (llama_token_to_piece) -------------------------------------------------

    def piece(self, tid: int, special: bool) -> bytes:
        attr = int(self.attrs[tid])
        if not special and attr & (ATTR_UNKNOWN | ATTR_CONTROL):
            return b""
        p = self._pieces.get(tid)
        if p is None:
            p = self._pieces[tid] = self._make_piece(tid, attr)
        return p

    def _make_piece(self, tid: int, attr: int) -> bytes:
        text = self.texts[tid]
        if attr & (ATTR_UNKNOWN | ATTR_CONTROL | ATTR_USER_DEFINED):
            return text.encode("utf-8")
        if attr & ATTR_NORMAL:
            if self.model == "llama":
                return text.replace(SPM_SPACE, " ").encode("utf-8")
            decode = char_to_byte()
            out = bytearray()
            for c in text:
                b = decode.get(c)
                if b is None:  # llama_decode_text marks code points outside the byte alphabet
                    out += b"[UNK_BYTE_0x" + c.encode("utf-8").hex().encode() + text.encode("utf-8") + b"]"
                else:
                    out.append(b)
            return bytes(out)
        if attr & ATTR_BYTE:  # "<0xNN>"
            return bytes([int(text[3:5], 16)])
        return b""

    def is_eog(self, tid: int) -> bool:
        return tid in self.eog_ids

    def byte_token(self, b: int) -> int:
        """SPM byte fallback (llama_vocab::byte_to_token): "<0xNN>", else the byte itself."""
        tid = self.token_to_id.get(f"<0x{b:02X}>")
        if tid is None:
            tid = self.token_to_id.get(chr(b))
        if tid is None:
            raise LlamacliError(f"the vocabulary has no token for byte 0x{b:02X}")
        return tid


# -- metadata arrays: GGUFFile reads them from the mapped file in one piece -----------------


def read_strings(gf, key: str) -> list[str] | None:
    return gf.strings(key)


def read_numbers(gf, key: str, dtype) -> np.ndarray | None:
    return gf.array(key, dtype)


def load_vocab(gf) -> Vocab:
    """Read the vocabulary of a GGUF (a `llamacli.gguf_io.GGUFFile`) the way llama.cpp does."""
    model = gf.get(Keys.Tokenizer.MODEL)
    if model is None:
        raise LlamacliError(f"{gf.path}: no tokenizer in this file ({Keys.Tokenizer.MODEL} is missing)")
    if model not in ("gpt2", "llama"):
        raise LlamacliError(f"{gf.path}: tokenizer model '{model}' is not supported (only gpt2 BPE and llama SPM)")
    texts = read_strings(gf, Keys.Tokenizer.LIST)
    if not texts:
        raise LlamacliError(f"{gf.path}: {Keys.Tokenizer.LIST} is missing or empty")
    n = len(texts)
    if "" in texts:  # llama.cpp renames empty tokens
        texts = [t or f"[EMPTY_{i}]" for i, t in enumerate(texts)]
    token_to_id = dict(zip(texts, range(n)))

    types = read_numbers(gf, Keys.Tokenizer.TOKEN_TYPE, np.int32)
    if types is None:
        attrs = np.full(n, ATTR_NORMAL, dtype=np.int32)
    else:
        if len(types) < n:
            raise LlamacliError(f"{gf.path}: {Keys.Tokenizer.TOKEN_TYPE} has {len(types)} entries for {n} tokens")
        lut = np.zeros(max(7, int(types.max()) + 1), dtype=np.int32)
        for t, a in _TYPE_TO_ATTR.items():
            lut[t] = a
        attrs = lut[np.clip(types[:n], 0, len(lut) - 1)]
    scores = read_numbers(gf, Keys.Tokenizer.SCORES, np.float32)
    if scores is not None:
        scores = scores[:n]

    # defaults per tokenizer model, then the pre-tokenizer's and the metadata's say
    if model == "llama":
        special = {"bos": 1, "eos": 2, "unk": 0}
        add_bos, add_eos, add_space_prefix, clean_spaces = True, False, True, False
    else:
        from .pretokenize import pre_tokenizer

        pre = pre_tokenizer(gf.get(Keys.Tokenizer.PRE))
        special = {"bos": 11, "eos": 11}
        add_bos, add_eos, add_space_prefix, clean_spaces = bool(pre.add_bos), False, False, pre.clean_spaces
    for name in _SPECIAL_KEYS:
        special.setdefault(name, -1)
    for name, keys in _SPECIAL_KEYS.items():
        if special[name] >= n:
            special[name] = -1
        for key in keys:
            v = gf.get(key)
            if v is not None and 0 <= int(v) < n:
                special[name] = int(v)
    v = gf.get(Keys.Tokenizer.ADD_PREFIX)
    add_space_prefix = bool(v) if v is not None else add_space_prefix
    v = gf.get(Keys.Tokenizer.ADD_BOS)
    add_bos = bool(v) if v is not None else add_bos
    v = gf.get(Keys.Tokenizer.ADD_EOS)
    add_eos = bool(v) if v is not None else add_eos

    # auto-detect EOT/EOM/FIM by text; such tokens become control tokens
    attrs = attrs.copy()
    for name, candidates in (("eot", EOT_TEXTS), ("eom", EOM_TEXTS), *FIM_TEXTS.items()):
        if special[name] != -1:
            continue
        # llama.cpp takes the first hit of an unordered_map walk; the lowest id is our choice
        hits = sorted(token_to_id[t] for t in candidates if t in token_to_id)
        if hits:
            special[name] = hits[0]
            for h in hits[:1]:
                attrs[h] |= ATTR_CONTROL
    # control tokens whose text says "unused"
    for i in np.nonzero(attrs & ATTR_CONTROL)[0]:
        if "unused" in texts[i]:
            attrs[i] |= ATTR_UNUSED

    eog = {special[k] for k in ("fim_pad", "fim_rep", "fim_sep") if special[k] != -1}
    for t in EOG_TEXTS:
        tid = token_to_id.get(t)
        if tid is not None:
            eog.add(tid)
            attrs[tid] |= ATTR_CONTROL
    eog |= {special[k] for k in ("eos", "eot", "eom") if special[k] != -1}
    eog_texts = {texts[i]: i for i in eog}
    # o200k_harmony / solar-open: "<|end|>" is not end-of-generation next to these
    if "<|end|>" in eog_texts and (("<|return|>" in eog_texts and "<|call|>" in eog_texts)
                                   or ("<|calls|>" in eog_texts and "<|flush|>" in eog_texts)):
        eog.discard(eog_texts["<|end|>"])
        attrs[eog_texts["<|end|>"]] = ATTR_USER_DEFINED
    if "</s>" in eog_texts and ("<|tool_response>" in eog_texts or "<|plamo:eos|>" in eog_texts):
        eog.discard(eog_texts["</s>"])
        attrs[eog_texts["</s>"]] = ATTR_NORMAL

    # special-token partition order: longest text first (std::sort, ties by id here)
    cand = np.nonzero(attrs & (ATTR_CONTROL | ATTR_USER_DEFINED | ATTR_UNKNOWN))[0].tolist()
    cand.sort(key=lambda i: -len(texts[i].encode("utf-8")))

    return Vocab(model=model, texts=texts, attrs=attrs, scores=scores, token_to_id=token_to_id,
                 special=special, add_bos=add_bos, add_eos=add_eos,
                 add_space_prefix=add_space_prefix, clean_spaces=clean_spaces,
                 eog_ids=frozenset(eog), special_cache=cand)
