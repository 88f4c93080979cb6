"""Pre-tokenizers of byte-level BPE: split text into words before merging, as llama.cpp does.

`tokenizer.ggml.pre` names a list of expressions (llm_tokenizer_bpe in llama-vocab.cpp).
They run one after the other, each splitting the pieces the previous one left
(unicode_regex_split in unicode.cpp). Three expressions are never run as regexes by
llama.cpp: the GPT-2, Llama-3 and Qwen-2 patterns are hand-written state machines
(unicode_regex_split_custom_*), and they differ from a real regex engine at the edges
(for example `\\s+(?!\\S)` at the end of a piece, or contractions, which are matched
case-insensitively by ASCII lower-casing only). They are mirrored here step by step.
Every other expression goes through std::regex on a "collapsed" text in which each
non-ASCII code point is replaced by one byte naming its category; `_collapsed_split`
reproduces that.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import LlamacliError
from .unicode import LETTER, NUMBER, PUNCTUATION, SYMBOL, ACCENT_MARK, CATEGORY_MASK, WHITESPACE, flags_of

GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
LLAMA3 = (r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+"
          r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2 = (r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+"
         r"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


@dataclass(frozen=True)
class PreTokenizer:
    name: str                      # tokenizer.ggml.pre as written in the GGUF
    expressions: tuple[str, ...]   # applied in order, each refining the previous split
    clean_spaces: bool = True      # llama_detokenize's clean-up passes (clean_up_tokenization_spaces)
    ignore_merges: bool = False    # a word that is a token as a whole is not merged
    add_bos: bool | None = None    # default for add_bos before tokenizer.ggml.add_bos_token


# the expression lists of llm_tokenizer_bpe, by llama.cpp pre-tokenizer type
_EXPRESSIONS = {
    "default": (r"[\p{P}\$\+<=>\^~\|]+", GPT2, r"\p{N}+", r"[0-9][0-9][0-9]"),
    "llama3": (LLAMA3,),
    "falcon": (r"[\p{P}\$\+<=>\^~\|`]+", GPT2, r"[0-9][0-9][0-9]"),
    "starcoder": (r"\p{N}", GPT2),
    "gpt2": (GPT2,),
    "qwen2": (QWEN2,),
}

# tokenizer.ggml.pre -> (expression list, options), as llama_vocab::impl::load maps them;
# names whose types need machinery not written here (other splitters, add_sep, ...) are absent
_NAMES: dict[str, tuple[str, dict]] = {
    "default": ("default", {}),
    **{n: ("llama3", {"ignore_merges": True, "add_bos": True})
       for n in ("llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0",
                 "lfm2", "jina-v5-nano")},
    "dbrx": ("llama3", {}),
    "smaug-bpe": ("llama3", {}),
    "falcon": ("falcon", {}),
    **{n: ("starcoder", {}) for n in ("starcoder", "refact", "codeshell", "exaone", "minerva-7b", "mellum2")},
    **{n: ("starcoder", {"clean_spaces": False}) for n in ("command-r", "smollm")},
    **{n: ("gpt2", {}) for n in ("gpt-2", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v2-es",
                                 "jina-v2-de", "a.x-4.0", "mellum", "modern-bert", "mpt", "olmo",
                                 "jais", "exaone4")},
    **{n: ("gpt2", {"clean_spaces": False}) for n in ("trillion", "granite-docling")},
    **{n: ("qwen2", {}) for n in ("stablelm2", "megrez")},
    **{n: ("qwen2", {"clean_spaces": False})
       for n in ("qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "hunyuan", "solar-open")},
}
PRE_NAMES = tuple(sorted(_NAMES))


def pre_tokenizer(name: str | None) -> PreTokenizer:
    if not name:  # llama.cpp warns "missing pre-tokenizer type, using: 'default'"
        name = "default"
    entry = _NAMES.get(name)
    if entry is None:
        raise LlamacliError(f"unknown pre-tokenizer type '{name}' (tokenizer.ggml.pre); "
                            f"supported: {', '.join(PRE_NAMES)}")
    kind, options = entry
    return PreTokenizer(name, _EXPRESSIONS[kind], **options)


def split_words(text: str, pre: PreTokenizer) -> list[str]:
    """The words of `text` (code points, not yet byte-encoded), as unicode_regex_split."""
    if not text:
        return []
    flags = flags_of(text).tolist()
    lengths = [len(text)]
    for expr in pre.expressions:
        custom = _CUSTOM.get(expr)
        lengths = custom(text, flags, lengths) if custom else _collapsed_split(text, flags, lengths, expr)
    words, start = [], 0
    for n in lengths:
        words.append(text[start:start + n])
        start += n
    return words


# -- the hand-written splitters (unicode_regex_split_custom_gpt2 / _llama3 / _qwen2) ----------

_LNW = LETTER | NUMBER | WHITESPACE


def _custom_split(text: str, flags: list[int], lengths: list[int], style: str) -> list[int]:
    """One state machine for the three patterns; `style` is 'gpt2', 'llama3' or 'qwen2'."""
    out: list[int] = []
    ci = style != "gpt2"          # contractions case-insensitive, [^\r\n\p{L}\p{N}]?\p{L}+ etc.
    max_digits = {"gpt2": 0, "llama3": 3, "qwen2": 1}[style]
    start = 0
    for length in lengths:
        ini, end = start, start + length
        start = end

        def fl(p: int) -> int:    # flags, 0 outside the piece (llama.cpp's OUT_OF_RANGE)
            return flags[p] if ini <= p < end else 0

        prev = ini
        pos = ini
        while pos < end:
            c = text[pos]
            f = flags[pos]
            # 's|'t|'re|'ve|'m|'ll|'d  (llama3/qwen2: either case, ASCII only)
            if c == "'" and pos + 1 < end:
                n1 = text[pos + 1].lower() if ci and text[pos + 1].isascii() else text[pos + 1]
                if n1 in ("s", "t", "m", "d"):
                    pos += 2
                    out.append(pos - prev)
                    prev = pos
                    continue
                if pos + 2 < end:
                    n2 = text[pos + 2].lower() if ci and text[pos + 2].isascii() else text[pos + 2]
                    if n1 + n2 in ("re", "ve", "ll"):
                        pos += 3
                        out.append(pos - prev)
                        prev = pos
                        continue
            if ci:
                # [^\r\n\p{L}\p{N}]?\p{L}+
                if not (c == "\r" or c == "\n" or f & NUMBER) and (f & LETTER or fl(pos + 1) & LETTER):
                    pos += 1
                    while fl(pos) & LETTER:
                        pos += 1
                    out.append(pos - prev)
                    prev = pos
                    continue
                # \p{N}{1,3} (llama3) or \p{N} (qwen2)
                if f & NUMBER:
                    run = pos
                    while fl(pos) & NUMBER:
                        pos += 1
                        if pos - run >= max_digits:
                            out.append(pos - prev)
                            prev = run = pos
                    if pos > prev:
                        out.append(pos - prev)
                        prev = pos
                    continue
                # ' ?[^\s\p{L}\p{N}]+[\r\n]*' -- the entry test looks at the current code point
                f2 = fl(pos + 1) if c == " " else f
                if not (f2 & _LNW) and f:
                    pos += c == " "
                    while not (fl(pos) & _LNW) and fl(pos):
                        pos += 1
                    while pos < end and text[pos] in "\r\n":
                        pos += 1
                    out.append(pos - prev)
                    prev = pos
                    continue
            else:
                f2 = fl(pos + 1) if c == " " else f
                kind = LETTER if f2 & LETTER else NUMBER if f2 & NUMBER else 0
                if kind:  # ' ?\p{L}+' or ' ?\p{N}+'
                    pos += c == " "
                    while fl(pos) & kind:
                        pos += 1
                    out.append(pos - prev)
                    prev = pos
                    continue
                if not (f2 & _LNW) and f2:  # ' ?[^\s\p{L}\p{N}]+'
                    pos += c == " "
                    while not (fl(pos) & _LNW) and fl(pos):
                        pos += 1
                    out.append(pos - prev)
                    prev = pos
                    continue
            n_ws = 0
            last_crlf = 0
            while fl(pos + n_ws) & WHITESPACE:
                if ci and text[pos + n_ws] in "\r\n":
                    last_crlf = pos + n_ws + 1
                n_ws += 1
            if last_crlf:              # \s*[\r\n]+
                pos = last_crlf
            elif n_ws > 1 and pos + n_ws < end:   # \s+(?!\S): leave the last space to the next word
                pos += n_ws - 1
            elif n_ws:                 # \s+
                pos += n_ws
            else:                      # nothing matched: one code point alone
                pos += 1
            out.append(pos - prev)
            prev = pos
    return out


_CUSTOM = {
    GPT2: lambda t, f, l: _custom_split(t, f, l, "gpt2"),
    LLAMA3: lambda t, f, l: _custom_split(t, f, l, "llama3"),
    QWEN2: lambda t, f, l: _custom_split(t, f, l, "qwen2"),
}


# -- everything else: std::regex over the collapsed text -------------------------------------

# one byte per category for code points >= 128 (k_ucat_cpt); white space becomes \v
_COLLAPSED_BYTE = {NUMBER: "\xd1", LETTER: "\xd2", PUNCTUATION: "\xd3", ACCENT_MARK: "\xd4", SYMBOL: "\xd5"}
# what \p{..} becomes inside a class: the category byte plus its ASCII members (k_ucat_map)
_CLASS_BODY = {
    "N": "\xd1" + r"0-9",
    "L": "\xd2" + r"A-Za-z",
    "P": "\xd3" + r"!-#%-*,-/:-;?-@\[-\]_\{\}",
    "M": "\xd4",
    "S": "\xd5" + r"\$\+<-\>\^`\|~",
}
_PROP = re.compile(r"\\p\{(N|L|P|M|S|Lu|Ll|Lt|Lm|Lo)\}")


def _collapse_regex(expr: str) -> str:
    out, inside, i = [], False, 0
    while i < len(expr):
        ch = expr[i]
        if ch == "[" and (i == 0 or expr[i - 1] != "\\"):
            inside = True
        elif ch == "]" and inside and expr[i - 1] != "\\":
            inside = False
        m = _PROP.match(expr, i)
        if m:
            body = _CLASS_BODY[m.group(1)[0]]
            out.append(body if inside else f"[{body}]")
            i = m.end()
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def _collapsed_split(text: str, flags: list[int], lengths: list[int], expr: str) -> list[int]:
    if _PROP.search(expr):
        subject = "".join(
            c if ord(c) < 128 else "\x0b" if f & WHITESPACE else _COLLAPSED_BYTE.get(f & CATEGORY_MASK, "\xd0")
            for c, f in zip(text, flags)
        )
        pattern = _collapse_regex(expr)
    else:  # std::wregex on the code points; non-ASCII white space as \v
        subject = "".join("\x0b" if ord(c) >= 128 and f & WHITESPACE else c for c, f in zip(text, flags))
        pattern = expr
    # C-locale std::regex: \s \d \w are ASCII-only
    rx = re.compile(pattern, re.ASCII)
    out: list[int] = []
    start = 0
    for length in lengths:
        pos = 0
        for m in rx.finditer(subject, start, start + length):
            if m.start() - start > pos:
                out.append(m.start() - start - pos)
            out.append(m.end() - m.start())
            pos = m.end() - start
        if pos < length:
            out.append(length - pos)
        start += length
    return out
