"""SentencePiece (llm_tokenizer_spm_session in llama.cpp's src/llama-vocab.cpp).

The text, spaces already escaped to ▁, starts as one symbol per UTF-8 character. Adjacent
symbols whose concatenation is a token are queued by that token's score; the best pair
(highest score, then leftmost) is merged, and its new neighbours are queued, until no pair
is left. A final symbol that is not a token falls back to its bytes, <0xNN>.
"""

from __future__ import annotations

import heapq

from .vocab import Vocab


def spm_encode(vocab: Vocab, text: str, out: list[int]) -> None:
    """Append the ids of `text` (already ▁-escaped) to `out`."""
    if not text:
        return
    t2i = vocab.token_to_id
    scores = vocab.scores
    n_vocab = vocab.n_vocab
    sym = list(text)
    nxt = list(range(1, len(sym))) + [-1]
    prv = list(range(-1, len(sym) - 1))
    heap: list[tuple[float, int, int, int]] = []  # (-score, left, right, merged length)

    def push(left: int, right: int) -> None:
        if left < 0 or right < 0:
            return
        tid = t2i.get(sym[left] + sym[right])
        if tid is None or tid >= n_vocab:
            return
        score = float(scores[tid]) if scores is not None else 0.0
        heapq.heappush(heap, (-score, left, right, len(sym[left]) + len(sym[right])))

    for i in range(len(sym) - 1):
        push(i, i + 1)
    while heap:
        _, left, right, size = heapq.heappop(heap)
        a, b = sym[left], sym[right]
        if not a or not b or len(a) + len(b) != size:
            continue  # outdated: one side has been merged since
        sym[left] = a + b
        sym[right] = ""
        nxt[left] = nxt[right]
        if nxt[right] >= 0:
            prv[nxt[right]] = left
        push(prv[left], left)
        push(left, nxt[left])

    i = 0
    while i != -1:
        s = sym[i]
        tid = t2i.get(s)
        if tid is not None:
            out.append(tid)
        else:
            out.extend(vocab.byte_token(b) for b in s.encode("utf-8", "surrogatepass"))
        i = nxt[i]
