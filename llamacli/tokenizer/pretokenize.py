"""Pre-tokenizers of byte-level BPE: split text into words before merging, as llama.cpp does.

`tokenizer.ggml.pre` names a llama.cpp pre-tokenizer type (llama_vocab::impl::load maps the
name to a LLAMA_VOCAB_PRE_TYPE_* and sets a few flags), and the type names a list of
expressions (the constructor of llm_tokenizer_bpe). They run one after the other, each
splitting the pieces the previous one left (unicode_regex_split in unicode.cpp).

A few expressions are never run as regexes by llama.cpp: when an expression is one of a
handful of known strings, a hand-written state machine runs instead (unicode_regex_split_custom):
the GPT-2, Llama-3, Qwen-2 and Qwen-3.5 patterns, Kimi-K2's `\\p{Han}+` (which stands for
its whole pattern), digit grouping (`\\p{AFMoE_digits}` and Tiny-Aya's `\\d{1,3}(?=...)`) and
the newline split `[^\\n]+|[\\n]+`. They differ from a real regex engine at the edges (for
example `\\s+(?!\\S)` at the end of a piece, contractions matched by ASCII lower-casing only,
or Kimi-K2 ignoring `\\p{M}`), so they are mirrored here step by step.

Every other expression goes through std::regex (unicode_regex_split_stl). When it names a
Unicode category it runs on a "collapsed" text in which each non-ASCII code point is replaced
by one byte naming its category, and the categories in the expression by classes of those
bytes (`\\p{Lu}`, `\\p{Ll}` ... all become "any letter"); otherwise std::wregex runs on the code
points, with non-ASCII white space turned into \\v. Either way \\s, \\d are ASCII-only (the C
locale). `_regex_split` reproduces that with Python's `re`, whose backtracking semantics are
ECMAScript's for the constructs these expressions use.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from ..errors import LlamacliError
from .unicode import (ACCENT_MARK, CATEGORY_MASK, LETTER, NUMBER, PUNCTUATION, SYMBOL, WHITESPACE,
                      flags_of)

# -- the expressions of llm_tokenizer_bpe (written exactly as llama.cpp's strings) ------------

_CONTRACTIONS = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"

GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
LLAMA3 = (_CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?\p{L}+"
          r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
# the tokenizer.json original of LLAMA3; llama.cpp's custom splitter accepts it too
LLAMA3_CI = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+"
             r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2 = (_CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?\p{L}+"
         r"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN35 = (_CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+"
          r"|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
KIMI_K2 = r"\p{Han}+"                     # a trigger: the custom splitter runs K2's whole pattern
AFMOE_DIGITS = r"\p{AFMoE_digits}"        # a trigger for the digit-grouping splitter
TINY_AYA_DIGITS = r"\d{1,3}(?=(?:\d{3})*\b)"   # run by the same digit-grouping splitter
NEWLINES = r"[^\n]+|[\n]+"

JAIS2 = (_CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
         r"|\s*[\r\n]+|\s{512}(?!\S)|\s{256}(?!\S)|\s{128}(?!\S)|\s{64}(?!\S)|\s{32}(?!\S)"
         r"|\s{16}(?!\S)|\s{8}(?!\S)|\s{4}(?!\S)|\s{1,2}(?!\S)|\s{1}")
_CJK = "[一-龥\u3040-ゟ゠-ヿ]+"
# ASCII punctuation then ASCII letters; these strings hold real CR/LF characters, as in C++
_DEEPSEEK3_MAIN = ("[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+"
                   "|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+")
_GPT4O_WORDS = (r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+" + _CONTRACTIONS + "?"
                r"|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*" + _CONTRACTIONS + "?")
_CASED_WORDS = (r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"
                + _CONTRACTIONS + "?"
                r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*"
                + _CONTRACTIONS + "?")
_BLOOM = " ?[^(\\s|.,!?…。，、।۔،)]+"
_DEEPSEEK_CJK = "[一-龥ࠀ-一가-\ud7ff]+"
# letters of many scripts; escaped, since several are singletons that Unicode normalisation
# would change (U+212A KELVIN SIGN, U+2126 OHM SIGN, U+1F7D ...)
_DEEPSEEK_LLM_LETTERS = (
    "\\s?[A-Za-z\u00b5\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u01ba\u01bc-\u01bf\u01c4-\u0293"
    "\u0295-\u02af\u0370-\u0373\u0376\u0377\u037b-\u037d\u037f\u0386\u0388-\u038a\u038c"
    "\u038e-\u03a1\u03a3-\u03f5\u03f7-\u0481\u048a-\u052f\u0531-\u0556\u10a0-\u10c5\u13a0"
    "-\u13f5\u13f8-\u13fd\u1c90-\u1cba\u1cbd-\u1cbf\u1d00-\u1d2b\u1d6b-\u1d77\u1d79-"
    "\u1d9a\u1e00-\u1f15\u1f18-\u1f1d\u1f20-\u1f45\u1f48-\u1f4d\u1f50-\u1f57\u1f59\u1f5b"
    "\u1f5d\u1f5f-\u1f7d\u1f80-\u1fb4\u1fb6-\u1fbc\u1fbe\u1fc2-\u1fc4\u1fc6-\u1fcc\u1fd0-"
    "\u1fd3\u1fd6-\u1fdb\u1fe0-\u1fec\u1ff2-\u1ff4\u1ff6-\u1ffc\u2102\u2107\u210a-\u2113"
    "\u2115\u2119-\u211d\u2124\u2126\u2128\u212a-\u212d\u212f-\u2134\u2139\u213c-\u213f"
    "\u2145-\u2149\u214e\u2183\u2184\u2c00-\u2c7b\u2c7e-\u2ce4\u2ceb-\u2cee\u2cf2\u2cf3"
    "\ua640-\ua66d\ua680-\ua69b\ua722-\ua76f\ua771-\ua787\ua78b-\ua78e\uab70-\uabbf\ufb00"
    "-\ufb06\ufb13-\ufb17\uff21-\uff3a\uff41-\uff5a\U00010400-\U0001044f\U000104b0-"
    "\U000104d3\U000104d8-\U000104fb\U00010c80-\U00010cb2\U00010cc0-\U00010cf2\U000118a0-"
    "\U000118df\U0001e900-\U0001e943]+"
)

# llm_tokenizer_bpe's expression lists, by LLAMA_VOCAB_PRE_TYPE_* (lower case)
_EXPRESSIONS: dict[str, tuple[str, ...]] = {
    "default": (r"[\p{P}\$\+<=>\^~\|]+", GPT2, r"\p{N}+", r"[0-9][0-9][0-9]"),
    "llama3": (LLAMA3,),                  # also dbrx, smaug, chatglm4
    "jais2": (JAIS2,),
    "deepseek_llm": ("[\r\n]", _DEEPSEEK_LLM_LETTERS, "\\s?[!-/:-~！-／：-～‘-‟\u3000-。]+", r"\s+$",
                     _DEEPSEEK_CJK, r"\p{N}+"),
    "deepseek3_llm": (r"\p{N}{1,3}", _CJK,  # also hunyuan_dense, joyai_llm, hy_v4
                      _DEEPSEEK3_MAIN + "| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+"),
    "spark2_5": (r"\p{N}{1,3}", _CJK,
                 _DEEPSEEK3_MAIN + "| ?[\\p{P}\\p{S}]+|[\r\n]|\\s+(?!\\S)|\\s+", r"\p{N}"),
    "youtu": ("[가-힣ㄱ-ㆎ]+|[！…“”‘’—：；，、-〿︰-﹏]+|[ㄅ-ㄯ]+|" + _CJK,
              _CASED_WORDS + r"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"),
    "deepseek_coder": ("[\r\n]", r"\s?\p{L}+", r"\s?\p{P}+", _DEEPSEEK_CJK, r"\p{N}"),
    "falcon": (r"[\p{P}\$\+<=>\^~\|`]+", GPT2, r"[0-9][0-9][0-9]"),
    # also refact, command_r, smollm, codeshell, exaone, minerva, mellum2
    "starcoder": (r"\p{N}", GPT2),
    "gpt2": (GPT2,),                      # also mpt, olmo, jais, trillion, granite_docling
    "qwen2": (QWEN2,),                    # also stablelm2, hunyuan, solar_open, grok_2
    "qwen35": (QWEN35,),
    "poro": (_BLOOM,),                    # also bloom, gpt3_finnish
    "viking": (_BLOOM, r"\p{N}"),
    "tekken": (r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+"
               r"|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*"
               r"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+",),
    "chameleon": (r"<sentinel:[0-9]+>", r"(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z", r"([\t\n]|    |  )",
                  r"\p{N}", r"[\p{P}!-/:-@\[-`{-~]", GPT2),
    "gpt4o": (_GPT4O_WORDS + r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+",),  # also minimax_m2
    "granite_emb_multi": (_GPT4O_WORDS.replace(r"(?=[\p{L}])", r"(?=[\p{L}\p{M}])")
                          + r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+",),
    "tiny_aya": (TINY_AYA_DIGITS,
                 _CASED_WORDS + r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"),
    "kimi_k2": (KIMI_K2,),
    "superbpe": (r"\p{N}+", r"(?=(\d{3})+(?!\d))"),
    "bailingmoe": (r"'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
                   r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+",),
    "seed_coder": (_CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1}| ?[^\s\p{L}\p{N}\r\n]+"
                   r"|\s*[\r\n]+|\s+(?!\S)|\s+",),
    "ufakzeka": (r"[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",),
    "afmoe": (AFMOE_DIGITS,
              "[一-鿿㐀-䶿豈-\ufaff\u3040-ゟ゠-ヿ･-ﾟ⼀-\u2fdfเ-\u0e7f\u0e80-\u0effក-\u17ffက-႟ꩠ-ꩿꧠ-\ua9ff"
              "가-\ud7afᄀ-ᇿ]+",
              _DEEPSEEK3_MAIN.replace("\r\n", "\\r\\n")
              + r"| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"),
    "laguna": (NEWLINES, QWEN2),
    "exaone_moe": (_CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?(?:\p{L}\p{M}*(?: \p{L}\p{M}*)*)+|\p{N}"
                   r"| ?[^\s\p{L}\p{N}]+[\r\n/]?|\s*[\r\n]|\s+(?!\S)|\s+",),
    "minicpm5": (r"\p{N}{1,3}", _CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}+"
                 r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"),
}


@dataclass(frozen=True)
class PreTokenizer:
    name: str                      # tokenizer.ggml.pre as written in the GGUF
    kind: str                      # llama.cpp's LLAMA_VOCAB_PRE_TYPE_*, lower case
    expressions: tuple[str, ...]   # applied in order, each refining the previous split
    clean_spaces: bool = True      # llama_detokenize's clean-up passes (clean_up_tokenization_spaces)
    ignore_merges: bool = False    # a word that is a token as a whole is not merged
    add_bos: bool | None = None    # default for add_bos before tokenizer.ggml.add_bos_token
    add_sep: bool = False          # llama_vocab_get_add_sep; tokenizing never reads it


_CS = {"clean_spaces": False}
_L3 = {"ignore_merges": True, "add_bos": True}

# tokenizer.ggml.pre -> (type, options), as the if-chain of llama_vocab::impl::load
_NAMES: dict[str, tuple[str, dict]] = {
    "default": ("default", {}),
    "minicpm5": ("minicpm5", {"ignore_merges": True}),
    **{n: ("llama3", _L3) for n in ("llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral",
                                    "midm-2.0", "lfm2", "jina-v5-nano")},
    "deepseek-llm": ("deepseek_llm", _CS),
    "deepseek-coder": ("deepseek_coder", _CS),
    "deepseek-v3": ("deepseek3_llm", _CS),
    "spark2_5": ("spark2_5", _CS),
    "youtu": ("youtu", {"clean_spaces": False, "ignore_merges": True}),
    "falcon": ("falcon", {}),
    "mpt": ("gpt2", {}),
    "starcoder": ("starcoder", {}),
    **{n: ("gpt2", {}) for n in ("gpt-2", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v2-es",
                                 "jina-v2-de", "a.x-4.0", "mellum", "modern-bert")},
    "jais-2": ("jais2", {}),
    **{n: ("gpt2", {"add_sep": True}) for n in ("jina-v1-en", "jina-v2-code", "roberta-bpe")},
    "refact": ("starcoder", {}),
    "command-r": ("starcoder", _CS),
    **{n: ("qwen2", _CS) for n in ("qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2")},
    "qwen35": ("qwen35", _CS),
    "stablelm2": ("qwen2", {}),
    "olmo": ("gpt2", {}),
    "dbrx": ("llama3", {}),
    "smaug-bpe": ("llama3", {}),
    "poro-chat": ("poro", _CS),
    # chatglm4 also starts from no BOS id (special_bos_id = LLAMA_TOKEN_NULL) before the
    # metadata; every GGUF of these models names its BOS, so that default never shows
    "chatglm-bpe": ("llama3", {}),
    **{n: ("llama3", {"ignore_merges": True}) for n in ("glm4", "glm5")},
    "viking": ("viking", _CS),
    "jais": ("gpt2", {}),
    "tekken": ("tekken", {"clean_spaces": False, "ignore_merges": True, "add_bos": True}),
    "smollm": ("starcoder", _CS),
    "codeshell": ("starcoder", {}),
    "bloom": ("poro", {}),
    "gpt3-finnish": ("poro", {}),
    "exaone": ("starcoder", {}),
    "exaone4": ("gpt2", {}),
    "exaone-moe": ("exaone_moe", {}),
    "chameleon": ("chameleon", {"clean_spaces": False, "add_bos": True}),
    "minerva-7b": ("starcoder", {}),
    "megrez": ("qwen2", {}),
    **{n: ("gpt4o", _CS) for n in ("gpt-4o", "llama4", "kanana2", "talkie", "minimax-m2")},
    "granite-embed-multi-97m": ("granite_emb_multi", {"clean_spaces": False, "ignore_merges": True}),
    **{n: ("tiny_aya", _CS) for n in ("tiny_aya", "cohere2moe")},
    "superbpe": ("superbpe", _CS),
    **{n: ("gpt2", _CS) for n in ("trillion", "granite-docling")},
    **{n: ("bailingmoe", _CS) for n in ("bailingmoe", "bailingmoe2", "llada-moe")},
    "seed-coder": ("seed_coder", _CS),
    **{n: ("qwen2", _CS) for n in ("hunyuan", "grok-2", "solar-open")},
    **{n: ("deepseek3_llm", _CS) for n in ("hunyuan-dense", "hy_v4", "joyai-llm")},
    "kimi-k2": ("kimi_k2", _CS),
    "ufakzeka": ("ufakzeka", _CS),
    "afmoe": ("afmoe", _CS),
    "laguna": ("laguna", _CS),
    "mellum2": ("starcoder", {}),
}

# Known to llama.cpp, but their BPE runs on raw UTF-8 (byte_encode = false: no GPT-2 byte
# alphabet, byte fallback through "<0xNN>" tokens) and, for some, on text whose spaces became
# "▁" (escape_whitespaces); the BPE here always byte-encodes, so these are refused by name.
_RAW_UTF8 = "its BPE runs on raw UTF-8 text (llama.cpp's byte_encode = false), which is not implemented"
_REFUSED: dict[str, str] = {
    "gemma4": _RAW_UTF8 + " (nor the ▁ space escape)",
    "granite-embed-multi-311m": _RAW_UTF8 + " (nor the ▁ space escape)",
    "sarvam-moe": _RAW_UTF8 + " (nor the ▁ space escape)",
    "whitespace": _RAW_UTF8,
}

PRE_NAMES = tuple(sorted(_NAMES))
KNOWN_PRE_NAMES = tuple(sorted({*_NAMES, *_REFUSED}))  # every name llama.cpp accepts


def pre_tokenizer(name: str | None) -> PreTokenizer:
    if not name:  # llama.cpp warns "missing pre-tokenizer type, using: 'default'"
        name = "default"
    entry = _NAMES.get(name)
    if entry is None:
        if name in _REFUSED:
            raise LlamacliError(f"pre-tokenizer type '{name}' (tokenizer.ggml.pre) is not supported: "
                                f"{_REFUSED[name]}")
        # llama_vocab::impl::load throws "unknown pre-tokenizer type: '...'"
        raise LlamacliError(f"unknown pre-tokenizer type: '{name}' (tokenizer.ggml.pre)")
    kind, options = entry
    return PreTokenizer(name, kind, _EXPRESSIONS[kind], **options)


def split_words(text: str, pre: PreTokenizer) -> list[str]:
    """The words of `text` (code points, not yet byte-encoded), as unicode_regex_split."""
    if not text:
        return []
    flags = flags_of(text).tolist()
    lengths = [len(text)]
    subjects: dict[bool, str] = {}  # the collapsed / wide text, built on first use
    for expr in pre.expressions:
        custom = _CUSTOM.get(expr)
        if custom is not None:
            lengths = custom(text, flags, lengths)
        else:
            lengths = _regex_split(text, flags, lengths, expr, subjects)
    words, start = [], 0
    for n in lengths:
        if n:  # std::regex can leave empty pieces (empty matches); they hold no tokens
            words.append(text[start:start + n])
            start += n
    return words


# -- the hand-written splitters (unicode_regex_split_custom_*) --------------------------------

_LNW = LETTER | NUMBER | WHITESPACE


def _whitespace_end(text: str, fl, pos: int, end: int, crlf: bool) -> int:
    """Where `\\s*[\\r\\n]+` (if crlf), `\\s+(?!\\S)` or `\\s+` ends, as the custom splitters
    decide it; pos + 1 when nothing matches (the code point goes alone)."""
    n_ws = 0
    last_crlf = 0
    while fl(pos + n_ws) & WHITESPACE:
        if crlf and text[pos + n_ws] in "\r\n":
            last_crlf = pos + n_ws + 1
        n_ws += 1
    if last_crlf:                          # \s*[\r\n]+
        return last_crlf
    if n_ws > 1 and pos + n_ws < end:      # \s+(?!\S): leave the last space to the next word
        return pos + n_ws - 1
    if n_ws:                               # \s+
        return pos + n_ws
    return pos + 1


def _contraction_len(text: str, pos: int, end: int, ci: bool) -> int:
    """Length of 's 't 'm 'd 're 've 'll at pos (0 if none); `ci`: either case, ASCII only
    (unicode_tolower maps no other code point to these letters)."""
    if text[pos] != "'" or pos + 1 >= end:
        return 0
    n1 = text[pos + 1]
    if ci and n1.isascii():
        n1 = n1.lower()
    if n1 in ("s", "t", "m", "d"):
        return 2
    if pos + 2 < end:
        n2 = text[pos + 2]
        if ci and n2.isascii():
            n2 = n2.lower()
        if n1 + n2 in ("re", "ve", "ll"):
            return 3
    return 0


def _custom_split(text: str, flags: list[int], lengths: list[int], style: str) -> list[int]:
    """unicode_regex_split_custom_gpt2 / _llama3 / _qwen2 / _qwen35 in one state machine."""
    out: list[int] = []
    ci = style != "gpt2"          # contractions case-insensitive, [^\r\n\p{L}\p{N}]?\p{L}+ etc.
    max_digits = {"gpt2": 0, "llama3": 3, "qwen2": 1, "qwen35": 1}[style]
    # qwen35: [\p{L}\p{M}]+ for letters, and marks are no punctuation
    letters = LETTER | ACCENT_MARK if style == "qwen35" else LETTER
    not_punct = _LNW | ACCENT_MARK if style == "qwen35" else _LNW
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
            n = _contraction_len(text, pos, end, ci)
            if n:
                pos += n
                out.append(pos - prev)
                prev = pos
                continue
            if ci:
                # [^\r\n\p{L}\p{N}]?\p{L}+
                if not (c == "\r" or c == "\n" or f & NUMBER) and (f & letters or fl(pos + 1) & letters):
                    pos += 1
                    while fl(pos) & letters:
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
                if not (f2 & not_punct) and f:
                    pos += c == " "
                    while not (fl(pos) & not_punct) and fl(pos):
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
            pos = _whitespace_end(text, fl, pos, end, ci)
            out.append(pos - prev)
            prev = pos
    return out


# unicode_cpt_is_han: CJK ideographs, extensions A..F, compatibility ideographs
_HAN_RANGES = ((0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF), (0x20000, 0x2A6DF),
               (0x2A700, 0x2EBEF), (0x2F800, 0x2FA1F))


def _is_han(c: str) -> bool:
    o = ord(c)
    return o >= 0x3400 and any(a <= o <= b for a, b in _HAN_RANGES)


def _kimi_k2_split(text: str, flags: list[int], lengths: list[int]) -> list[int]:
    """unicode_regex_split_custom_kimi_k2: Han runs, then the GPT-4o-like pattern on the rest.

    As llama.cpp's code, not K2's regex: letters are \\p{L} only (no \\p{M}), upper and lower
    case are not told apart, and a contraction may follow a word.
    """
    out: list[int] = []
    start = 0
    for length in lengths:
        ini, end = start, start + length
        start = end

        def fl(p: int) -> int:
            return flags[p] if ini <= p < end else 0

        def word_letter(p: int) -> bool:  # \p{L} && !Han, inside the piece
            return ini <= p < end and flags[p] & LETTER and not _is_han(text[p])

        prev = ini
        pos = ini
        while pos < end:
            c = text[pos]
            f = flags[pos]
            if _is_han(c):                              # [\p{Han}]+
                while pos < end and _is_han(text[pos]):
                    pos += 1
                out.append(pos - prev)
                prev = pos
                continue
            # [^\r\n\p{L}\p{N}]?[letters except Han]+ followed by an optional contraction; the
            # C++ also tracks "found no letters", which cannot happen once this test passed
            lead = not (c == "\r" or c == "\n" or f & (LETTER | NUMBER))
            if word_letter(pos) or (lead and word_letter(pos + 1)):
                pos += lead
                while word_letter(pos):
                    pos += 1
                if pos < end:
                    pos += _contraction_len(text, pos, end, True)
                out.append(pos - prev)
                prev = pos
                continue
            if f & NUMBER:                              # \p{N}{1,3}
                run = pos
                while fl(pos) & NUMBER:
                    pos += 1
                    if pos - run >= 3:
                        out.append(pos - prev)
                        prev = run = pos
                if pos > prev:
                    out.append(pos - prev)
                    prev = pos
                continue
            f2 = fl(pos + 1) if c == " " else f         # ' ?[^\s\p{L}\p{N}]+[\r\n]*'
            if not (f2 & _LNW) and f2:
                pos += c == " "
                while not (fl(pos) & _LNW) and fl(pos):
                    pos += 1
                while pos < end and text[pos] in "\r\n":
                    pos += 1
                out.append(pos - prev)
                prev = pos
                continue
            pos = _whitespace_end(text, fl, pos, end, True)
            out.append(pos - prev)
            prev = pos
    return out


def _digit_groups_split(text: str, flags: list[int], lengths: list[int]) -> list[int]:
    """unicode_regex_split_custom_afmoe: each run of digits in groups of three from the right
    ("1234567" -> "1", "234", "567"). Whatever precedes a run is not cut off: it goes with the
    run's first group ("ab1234" -> "ab1", "234"), as in llama.cpp."""
    out: list[int] = []
    start = 0
    for length in lengths:
        ini, end = start, start + length
        start = end
        prev = pos = ini
        while pos < end:
            if not flags[pos] & NUMBER:
                pos += 1
                continue
            run = pos
            while pos < end and flags[pos] & NUMBER:
                pos += 1
            cut = run + (pos - run) % 3
            if cut > run:
                out.append(cut - prev)
                prev = cut
            while cut < pos:
                cut += 3
                out.append(cut - prev)
                prev = cut
        if prev < end:
            out.append(end - prev)
    return out


def _newlines_split(text: str, flags: list[int], lengths: list[int]) -> list[int]:
    """unicode_regex_split_custom_newlines: runs of "\\n" and runs of anything else."""
    out: list[int] = []
    start = 0
    for length in lengths:
        pos, end = start, start + length
        start = end
        while pos < end:
            newline = text[pos] == "\n"
            run = pos
            while pos < end and (text[pos] == "\n") == newline:
                pos += 1
            out.append(pos - run)
    return out


_CUSTOM = {
    GPT2: lambda t, f, l: _custom_split(t, f, l, "gpt2"),
    LLAMA3: lambda t, f, l: _custom_split(t, f, l, "llama3"),
    LLAMA3_CI: lambda t, f, l: _custom_split(t, f, l, "llama3"),
    QWEN2: lambda t, f, l: _custom_split(t, f, l, "qwen2"),
    QWEN35: lambda t, f, l: _custom_split(t, f, l, "qwen35"),
    KIMI_K2: _kimi_k2_split,
    AFMOE_DIGITS: _digit_groups_split,
    NEWLINES: _newlines_split,
    TINY_AYA_DIGITS: _digit_groups_split,
}


# -- everything else: std::regex over the collapsed text, or std::wregex -------------------

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
# the categories llama.cpp knows (k_ucat_enum); \p{Lu} .. \p{Lo} all mean "a letter"
_PROP = re.compile(r"\\p\{(N|L|P|M|S|Lu|Ll|Lt|Lm|Lo)\}")


def _collapse_regex(expr: str) -> str:
    """The expression over the collapsed text (unicode_regex_split's rewrite loop)."""
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


def _ecmascript(expr: str) -> str:
    """ECMAScript syntax that Python's `re` reads differently: `$` outside a class is the end
    of the target only (Python's `$` also matches before a final newline)."""
    out, inside, i = [], False, 0
    while i < len(expr):
        ch = expr[i]
        if ch == "\\":
            out.append(expr[i:i + 2])
            i += 2
            continue
        if ch == "[" and not inside:
            inside = True
        elif ch == "]" and inside:
            inside = False
        elif ch == "$" and not inside:
            ch = r"\Z"
        out.append(ch)
        i += 1
    return "".join(out)


@functools.lru_cache(maxsize=None)
def _compiled(expr: str) -> tuple[bool, re.Pattern]:
    """(runs on the collapsed text?, the compiled expression) for one llama.cpp expression."""
    collapsed = bool(_PROP.search(expr))
    pattern = _collapse_regex(expr) if collapsed else expr
    # C-locale std::regex: \s \d \w are ASCII-only
    return collapsed, re.compile(_ecmascript(pattern), re.ASCII)


def _subject(text: str, flags: list[int], collapsed: bool) -> str:
    if collapsed:  # one byte per code point: ASCII as is, the rest by category
        return "".join(
            c if ord(c) < 128 else "\x0b" if f & WHITESPACE else _COLLAPSED_BYTE.get(f & CATEGORY_MASK, "\xd0")
            for c, f in zip(text, flags)
        )
    # std::wregex on the code points; non-ASCII white space as \v
    return "".join("\x0b" if ord(c) >= 128 and f & WHITESPACE else c for c, f in zip(text, flags))


def _regex_split(text: str, flags: list[int], lengths: list[int], expr: str,
                 subjects: dict[bool, str]) -> list[int]:
    """unicode_regex_split_stl: in each piece, every match is a word and so is every gap
    between matches. Empty matches give empty words, as std::regex_iterator's (Python's
    finditer steps over an empty match the same way: a longer match may start at the same
    place, an empty one only further on)."""
    collapsed, rx = _compiled(expr)
    subject = subjects.get(collapsed)
    if subject is None:
        subject = subjects[collapsed] = _subject(text, flags, collapsed)
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
