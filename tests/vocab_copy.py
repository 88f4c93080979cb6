"""Vocab-only copies of a GGUF for the pre-tokenizer tests and their reference script
(scripts/make_pretokenizer_reference.py): its general.* and tokenizer.* keys, no tensors, with
tokenizer.ggml.pre rewritten, some keys dropped, or one user-defined token appended."""

from __future__ import annotations

import functools
from pathlib import Path

from gguf import GGUFValueType

from llamacli.gguf_io import AtomicGGUFWriter, open_gguf

PRE_KEY = "tokenizer.ggml.pre"


@functools.lru_cache(maxsize=2)
def _source(path: Path):
    return open_gguf(path)


def gguf_str(s: str) -> bytes:
    b = s.encode("utf-8")
    return len(b).to_bytes(8, "little") + b


def string_kv(key: str, value: str) -> bytes:
    return gguf_str(key) + int(GGUFValueType.STRING).to_bytes(4, "little") + gguf_str(value)


def _append_item(gf, key: str, item: bytes) -> bytes:
    """The serialized array `key` with one more element (raw bytes `item`) at the end."""
    kv = gf.kv[key]
    blob = gf.raw_bytes(key)
    head = 8 + len(key.encode("utf-8")) + 4 + 4  # key, type ARRAY, item type
    return blob[:head] + (kv.count + 1).to_bytes(8, "little") + blob[head + 8:] + item


def write_vocab_gguf(src: Path, dst: Path, pre: str | None, *, separator: str | None = None,
                     drop: tuple[str, ...] = ()) -> Path:
    """general.* and tokenizer.* of `src`, no tensors; tokenizer.ggml.pre = `pre` (absent if
    None); keys in `drop` left out; `separator` appended as a user-defined token."""
    gf = _source(Path(src))
    kv = []
    for key in gf.kv:
        if not key.startswith(("general.", "tokenizer.")) or key in drop:
            continue
        if key == PRE_KEY:
            if pre is not None:
                kv.append((key, string_kv(key, pre)))
            continue
        if separator is not None and key == "tokenizer.ggml.tokens":
            kv.append((key, _append_item(gf, key, gguf_str(separator))))
        elif separator is not None and key == "tokenizer.ggml.token_type":
            assert gf.kv[key].item_type == GGUFValueType.INT32
            kv.append((key, _append_item(gf, key, (4).to_bytes(4, "little", signed=True))))  # USER_DEFINED
        elif separator is not None and key == "tokenizer.ggml.scores":
            raise SystemExit("tokenizer.ggml.scores present: extend write_vocab_gguf")
        else:
            kv.append((key, gf.raw_bytes(key)))
    if pre is not None and PRE_KEY not in gf.kv:
        kv.append((PRE_KEY, string_kv(PRE_KEY, pre)))
    with AtomicGGUFWriter(dst, kv, []):
        pass
    return dst
