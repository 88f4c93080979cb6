"""Incremental detokenization: text out as soon as it is whole UTF-8, never half a character.

A multi-byte character is often split over two or more tokens (byte-level BPE, or SPM byte
fallback <0xE2><0x82><0xAC>). The decoder keeps the bytes of an unfinished character back
until the rest arrives; bytes that can never become valid UTF-8 come out as U+FFFD.
"""

from __future__ import annotations


def _incomplete_tail(buf: bytes) -> int:
    """How many trailing bytes form the start of a character that is not complete yet."""
    n = len(buf)
    for back in range(1, min(4, n) + 1):
        b = buf[n - back]
        if b & 0xC0 == 0x80:          # continuation byte: look further back for the lead
            continue
        need = 2 if b & 0xE0 == 0xC0 else 3 if b & 0xF0 == 0xE0 else 4 if b & 0xF8 == 0xF0 else 1
        return back if need > back else 0
    return 0


class StreamDecoder:
    """feed(id) -> the newly completed text; flush() -> whatever is still held back."""

    def __init__(self, tokenizer, special: bool = False):
        self._tok = tokenizer
        self._special = special
        self._pending = b""

    def feed(self, tid: int) -> str:
        buf = self._pending + self._tok.token_to_piece(tid, self._special)
        hold = _incomplete_tail(buf)
        cut = len(buf) - hold
        self._pending = buf[cut:]
        return buf[:cut].decode("utf-8", errors="replace")

    def flush(self) -> str:
        buf, self._pending = self._pending, b""
        return buf.decode("utf-8", errors="replace")
