"""Byte-level BPE (llm_tokenizer_bpe_session in llama.cpp's src/llama-vocab.cpp).

A word from the pre-tokenizer is written in GPT-2's byte alphabet, cut into one symbol per
byte, and the adjacent pair with the best (lowest) merge rank is merged until none is left;
equal ranks go to the leftmost pair. The result of a word depends on the word alone, so it
is cached: natural text repeats its words, and perplexity runs tokenize long files.
"""

from __future__ import annotations

import heapq

from .pretokenize import PreTokenizer, split_words
from .unicode import byte_to_char
from .vocab import Vocab

_CACHE_LIMIT = 200_000


class BPE:
    def __init__(self, vocab: Vocab, merges: list[str], pre: PreTokenizer):
        self.vocab = vocab
        self.pre = pre
        # "left right" -> rank; the key is the merge line itself, so no split is needed
        self.ranks: dict[str, int] = {}
        for rank, line in enumerate(merges):
            self.ranks.setdefault(line, rank)
        self._byte_char = byte_to_char()
        self._cache: dict[str, list[int]] = {}

    def encode(self, text: str, out: list[int]) -> None:
        """Append the ids of one raw-text fragment to `out`."""
        cache = self._cache
        bc = self._byte_char
        for word in split_words(text, self.pre):
            ids = cache.get(word)
            if ids is None:
                encoded = "".join(bc[b] for b in word.encode("utf-8", "surrogatepass"))
                ids = self._word_ids(encoded)
                if len(cache) >= _CACHE_LIMIT:
                    cache.clear()
                cache[word] = ids
            out.extend(ids)

    def _word_ids(self, word: str) -> list[int]:
        t2i = self.vocab.token_to_id
        if self.pre.ignore_merges and word in t2i:
            return [t2i[word]]
        syms = self._merge(word) if len(word) > 1 else [word]
        ids: list[int] = []
        for s in syms:
            tid = t2i.get(s)
            if tid is not None:
                ids.append(tid)
                continue
            # not a token: llama.cpp looks up each UTF-8 byte of the symbol text on its own,
            # which only ever finds ASCII characters, and drops the rest
            for b in s.encode("utf-8"):
                tid = t2i.get(chr(b)) if b < 0x80 else None
                if tid is not None:
                    ids.append(tid)
        return ids

    def _merge(self, word: str) -> list[str]:
        ranks = self.ranks
        sym = list(word)                          # symbol texts; "" once merged away
        nxt = list(range(1, len(sym))) + [-1]
        prv = list(range(-1, len(sym) - 1))
        heap: list[tuple[int, int, int, str]] = []  # (rank, left, right, merged text)

        def push(left: int, right: int) -> None:
            if left < 0 or right < 0:
                return
            r = ranks.get(sym[left] + " " + sym[right])
            if r is not None:
                heapq.heappush(heap, (r, left, right, sym[left] + sym[right]))

        for i in range(len(sym) - 1):
            push(i, i + 1)
        while heap:
            _, left, right, text = heapq.heappop(heap)
            if not sym[left] or not sym[right] or sym[left] + sym[right] != text:
                continue  # outdated: one side has changed since the pair was queued
            sym[left] = text
            sym[right] = ""
            nxt[left] = nxt[right]
            if nxt[right] >= 0:
                prv[nxt[right]] = left
            push(prv[left], left)
            push(left, nxt[left])
        return [s for s in sym if s]
