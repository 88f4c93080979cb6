"""The grammar's pushdown matcher over UTF-8 code points, as src/llama-grammar.cpp runs it.

State is llama.cpp's: a set of stacks, each a tuple of positions into the flattened rules,
every stack positioned at a terminal (a char class or a token element) or empty (the grammar
may end here), plus the partial UTF-8 sequence left by the last accepted token.

- `advance(stack)` is llama_grammar_advance_stack: expand rule references until every stack
  stands on a terminal.
- `GrammarState.accept_token` is llama_grammar_accept_impl / llama_grammar_accept_token.
- `GrammarState.allows(token)` answers what llama_grammar_apply_impl (through
  llama_grammar_reject_candidates) decides for one candidate: EOG tokens only where a stack is
  empty, empty pieces never, and otherwise whether some stack consumes every code point of
  the piece (a trailing partial sequence must still be able to match).

Speed: a set of stacks is interned to a small integer and the step "this set, then this code
point" is memoised, so checking a token is a handful of dictionary look-ups per character, and
the same table serves every later step of the generation. `GrammarState.prefilter` rules out,
with one NumPy pass over the vocabulary, every token whose first code point no stack can take
(most of them, under a constraining grammar), so only the rest are checked one by one. The rejection recursion of
llama.cpp explores the same stacks (with repeats); since a token survives iff some stack
accepts it, the two give the same answer (tests/test_grammar_parse.py checks this against a
direct transcription of llama_grammar_reject_candidates_for_stack).
"""

from __future__ import annotations

import numpy as np

from .gbnf import G, Grammar

Stack = tuple[int, ...]

_TERMINALS = (G.CHAR, G.CHAR_NOT, G.CHAR_ANY, G.TOKEN, G.TOKEN_NOT)
_UTF8_LEN = (1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 2, 2, 3, 4)  # by the high nibble; 0: continuation


def decode_utf8(piece: bytes, partial: tuple[int, int]) -> tuple[list[int], tuple[int, int]]:
    """decode_utf8(std::string, llama_partial_utf8) without the terminating 0: the complete code
    points and the (value, n_remain) left over; n_remain -1 marks an invalid sequence, in which
    case the code points are dropped, as llama.cpp returns only its terminator then."""
    nul = piece.find(b"\0")
    if nul >= 0:
        piece = piece[:nul]  # llama.cpp walks a C string
    value, n_remain = partial
    cps: list[int] = []
    i, n = 0, len(piece)
    while i < n and n_remain > 0:  # finish the sequence the previous token began
        b = piece[i]
        if b >> 6 != 2:
            return [], (0, -1)
        value = (value << 6) + (b & 0x3F)
        i += 1
        n_remain -= 1
    if partial[1] > 0 and n_remain == 0:
        cps.append(value)
    while i < n:
        b = piece[i]
        n_remain = _UTF8_LEN[b >> 4] - 1
        if n_remain < 0:
            return [], (0, n_remain)
        value = b & ((1 << (7 - n_remain)) - 1)
        i += 1
        while i < n and n_remain > 0:
            value = (value << 6) + (piece[i] & 0x3F)
            i += 1
            n_remain -= 1
        if n_remain == 0:
            cps.append(value)
    return cps, (value, n_remain)


class CompiledGrammar:
    """The rules flattened into one element array (positions are indices into it), with the
    memo tables shared by every GrammarState of this grammar."""

    def __init__(self, grammar: Grammar):
        self.grammar = grammar
        self.types: list[int] = []
        self.values: list[int] = []
        self.rule_start: list[int] = []
        for rule in grammar.rules:
            self.rule_start.append(len(self.types))
            for kind, value in rule:
                self.types.append(int(kind))
                self.values.append(value)
        self._classes: dict[int, tuple] = {}
        self._advanced: dict[Stack, tuple[Stack, ...]] = {}
        self._sets: dict[tuple[Stack, ...], int] = {}
        self._set_list: list[tuple[Stack, ...]] = []
        self._steps: dict[tuple[int, int], int] = {}
        self._token_tops: dict[int, tuple[int, ...]] = {}
        self._has_empty: dict[int, bool] = {}

    # -- elements ------------------------------------------------------------------------------

    def is_end(self, pos: int) -> bool:
        return self.types[pos] in (G.END, G.ALT)

    def char_class(self, pos: int) -> tuple[bool, bool, tuple[tuple[int, int], ...], int]:
        """The class starting at pos: (positive, any, ranges, position after it)."""
        cls = self._classes.get(pos)
        if cls is None:
            t, v = self.types, self.values
            positive = t[pos] in (G.CHAR, G.CHAR_ANY)
            assert positive or t[pos] == G.CHAR_NOT, t[pos]
            any_, ranges, p = False, [], pos
            while True:
                if t[p + 1] == G.CHAR_RNG_UPPER:
                    ranges.append((v[p], v[p + 1]))
                    p += 2
                elif t[p] == G.CHAR_ANY:
                    any_ = True
                    p += 1
                else:
                    ranges.append((v[p], v[p]))
                    p += 1
                if t[p] != G.CHAR_ALT:
                    break
            cls = self._classes[pos] = (positive, any_, tuple(ranges), p)
        return cls

    def match_char(self, pos: int, chr_: int) -> bool:
        """llama_grammar_match_char."""
        positive, any_, ranges, _ = self.char_class(pos)
        found = any_ or any(lo <= chr_ <= hi for lo, hi in ranges)
        return found == positive

    def match_partial_char(self, pos: int, partial: tuple[int, int]) -> bool:
        """llama_grammar_match_partial_char: could some completion of the partial sequence match?"""
        positive, any_, ranges, _ = self.char_class(pos)
        value, n_remain = partial
        if n_remain < 0 or (n_remain == 1 and value < 2):  # invalid, or an overlong 2-byte ASCII
            return False
        low = value << (n_remain * 6)
        high = low | ((1 << (n_remain * 6)) - 1)
        if low == 0:
            if n_remain == 2:
                low = 1 << 11
            elif n_remain == 3:
                low = 1 << 16
        # llama.cpp walks the class in order and "." returns true at once; a range or char that
        # overlaps returns `positive`; a "." after a non-overlapping range is still reached
        t = self.types
        p = pos
        while True:
            if t[p + 1] == G.CHAR_RNG_UPPER:
                if self.values[p] <= high and low <= self.values[p + 1]:
                    return positive
                p += 2
            elif t[p] == G.CHAR_ANY:
                return True
            else:
                if low <= self.values[p] <= high:
                    return positive
                p += 1
            if t[p] != G.CHAR_ALT:
                break
        return not positive

    # -- stacks --------------------------------------------------------------------------------

    def advance(self, stack: Stack) -> tuple[Stack, ...]:
        """llama_grammar_advance_stack: the stacks reachable from `stack` that stand on a
        terminal (or are empty), in llama.cpp's order, without duplicates."""
        got = self._advanced.get(stack)
        if got is not None:
            return got
        t, v = self.types, self.values
        out: list[Stack] = []
        out_set: set[Stack] = set()
        todo = [stack]
        seen: set[Stack] = set()
        while todo:
            cur = todo.pop()
            if cur in seen:
                continue
            seen.add(cur)
            if not cur or t[cur[-1]] in _TERMINALS:
                if cur not in out_set:
                    out_set.add(cur)
                    out.append(cur)
                continue
            pos = cur[-1]
            if t[pos] != G.RULE_REF:
                raise AssertionError(f"grammar stack left on element type {t[pos]}")
            sub = self.rule_start[v[pos]]
            base = cur[:-1] if self.is_end(pos + 1) else cur[:-1] + (pos + 1,)
            while True:
                todo.append(base if self.is_end(sub) else base + (sub,))
                while not self.is_end(sub):
                    sub += 1
                if t[sub] == G.ALT:
                    sub += 1
                else:
                    break
        res = self._advanced[stack] = tuple(out)
        return res

    def initial_stacks(self) -> tuple[Stack, ...]:
        """llama_grammar_init_impl: one stack per alternative of the root rule, advanced."""
        out: list[Stack] = []
        pos = self.rule_start[self.grammar.root]
        while True:
            for s in self.advance(() if self.is_end(pos) else (pos,)):
                if s not in out:
                    out.append(s)
            while not self.is_end(pos):
                pos += 1
            if self.types[pos] == G.ALT:
                pos += 1
            else:
                break
        return tuple(out)

    def after_char(self, stack: Stack) -> tuple[Stack, ...]:
        """The top char class consumed: pop it, push what follows it in its rule, advance."""
        nxt = self.char_class(stack[-1])[3]
        return self.advance(stack[:-1] if self.is_end(nxt) else stack[:-1] + (nxt,))

    # -- interned stack sets -------------------------------------------------------------------

    def intern(self, stacks: tuple[Stack, ...]) -> int:
        sid = self._sets.get(stacks)
        if sid is None:
            sid = self._sets[stacks] = len(self._set_list)
            self._set_list.append(stacks)
        return sid

    def stacks_of(self, sid: int) -> tuple[Stack, ...]:
        return self._set_list[sid]

    def step(self, sid: int, chr_: int) -> int:
        """The stacks after one code point (llama_grammar_accept): char-class stacks that match
        it move on; empty and token stacks drop out, as llama_grammar_accept_chr drops them."""
        key = (sid, chr_)
        got = self._steps.get(key)
        if got is None:
            out: list[Stack] = []
            t = self.types
            for s in self._set_list[sid]:
                if s and t[s[-1]] not in (G.TOKEN, G.TOKEN_NOT) and self.match_char(s[-1], chr_):
                    for n in self.after_char(s):
                        if n not in out:
                            out.append(n)
            got = self._steps[key] = self.intern(tuple(out))
        return got

    def token_tops(self, sid: int) -> tuple[int, ...]:
        """Positions of token elements on top of the set's stacks."""
        got = self._token_tops.get(sid)
        if got is None:
            t = self.types
            got = self._token_tops[sid] = tuple(s[-1] for s in self._set_list[sid]
                                                if s and t[s[-1]] in (G.TOKEN, G.TOKEN_NOT))
        return got

    def has_empty(self, sid: int) -> bool:
        got = self._has_empty.get(sid)
        if got is None:
            got = self._has_empty[sid] = any(not s for s in self._set_list[sid])
        return got

    def match_token(self, pos: int, token: int) -> bool:
        """llama_grammar_match_token."""
        return (self.values[pos] == token) == (self.types[pos] == G.TOKEN)


class TokenPieces:
    """What the grammar sees of a vocabulary: each token's piece as llama_vocab::token_to_piece
    caches it (special tokens rendered), its code points, and which tokens end generation."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.n_vocab = tokenizer.n_vocab
        self.eog = tokenizer.eog_ids
        self._pieces: dict[int, bytes] = {}
        self._decoded: dict[int, tuple[list[int], tuple[int, int]]] = {}

    def piece(self, tid: int) -> bytes:
        p = self._pieces.get(tid)
        if p is None:
            p = self._pieces[tid] = self.tokenizer.token_to_piece(tid, special=True)
        return p

    def decoded(self, tid: int, partial: tuple[int, int]) -> tuple[list[int], tuple[int, int]]:
        if partial[1] > 0:
            return decode_utf8(self.piece(tid), partial)
        d = self._decoded.get(tid)
        if d is None:
            d = self._decoded[tid] = decode_utf8(self.piece(tid), (0, 0))
        return d


CHECK, NEVER = -1, -2  # first-code-point table: check the token in full / the grammar never allows it


def first_code_points(pieces) -> tuple[np.ndarray, np.ndarray]:
    """Per token, the first code point of its piece (decoded with no partial sequence pending),
    or CHECK (EOG tokens, pieces that are only a partial character) or NEVER (empty pieces,
    a leading NUL, invalid UTF-8: llama_grammar_apply_impl rejects them whatever the state);
    and the distinct first code points. Built once per vocabulary, kept on `pieces`."""
    got = getattr(pieces, "_first_cps", None)
    if got is None:
        first = np.empty(pieces.n_vocab, np.int64)
        for tid in range(pieces.n_vocab):
            if tid in pieces.eog:
                first[tid] = CHECK
                continue
            piece = pieces.piece(tid)
            if not piece or piece[0] == 0:
                first[tid] = NEVER
                continue
            cps, partial = pieces.decoded(tid, (0, 0))
            first[tid] = cps[0] if cps else (NEVER if partial[1] < 0 else CHECK)
        got = (first, np.unique(first[first >= 0]))
        pieces._first_cps = got
    return got


class GrammarError(RuntimeError):
    """The grammar cannot continue (llama.cpp throws or aborts here)."""


class GrammarState:
    """One generation's grammar: the stacks and the partial UTF-8 sequence."""

    def __init__(self, compiled: CompiledGrammar, pieces: TokenPieces):
        self.g = compiled
        self.pieces = pieces
        self.reset()

    def reset(self) -> None:
        self.sid = self.g.intern(self.g.initial_stacks())
        self.partial: tuple[int, int] = (0, 0)

    @property
    def stacks(self) -> tuple[Stack, ...]:
        return self.g.stacks_of(self.sid)

    def can_end(self) -> bool:
        """A stack is empty: the text so far is a complete sentence of the grammar."""
        return self.g.has_empty(self.sid)

    def prefilter(self) -> np.ndarray | None:
        """A boolean per token, False where the token cannot be allowed because no stack takes
        its first code point; None when no quick answer exists (a token element on top of a
        stack, or a partial character pending, makes every token worth a full check)."""
        g = self.g
        if self.partial[1] != 0 or g.token_tops(self.sid):
            return None
        first, distinct = first_code_points(self.pieces)
        ok = np.zeros(distinct.shape[0], bool)
        for s in g.stacks_of(self.sid):
            if not s:
                continue
            positive, any_, ranges, _ = g.char_class(s[-1])
            hit = np.ones_like(ok) if any_ else np.zeros_like(ok)
            for lo, hi in ranges:
                hit |= (distinct >= lo) & (distinct <= hi)
            ok |= hit if positive else ~hit
        keep = np.zeros(first.shape[0], bool)
        keep[first == CHECK] = True
        real = first >= 0
        keep[real] = ok[np.searchsorted(distinct, first[real])]
        return keep

    # -- llama_grammar_apply_impl, one candidate -----------------------------------------------

    def allows(self, tid: int) -> bool:
        pieces = self.pieces
        if tid in pieces.eog:
            return self.can_end()
        piece = pieces.piece(tid)
        if not piece or piece[0] == 0:
            return False
        cps, partial = pieces.decoded(tid, self.partial)
        return self.allows_code_points(tid, cps, partial)

    def allows_code_points(self, tid: int, cps: list[int], partial: tuple[int, int]) -> bool:
        g = self.g
        if partial[1] < 0:
            return False  # an invalid sequence is rejected by every stack
        sid = self.sid
        for c in cps:
            for pos in g.token_tops(sid):  # a token element takes the whole token by its id
                if g.match_token(pos, tid):
                    return True
            sid = g.step(sid, c)
            if not g.stacks_of(sid):
                return False
        if partial[1] == 0:
            return bool(g.stacks_of(sid))
        t = g.types
        return any(s and t[s[-1]] not in (G.TOKEN, G.TOKEN_NOT) and g.match_partial_char(s[-1], partial)
                   for s in g.stacks_of(sid))

    # -- llama_grammar_accept_impl ---------------------------------------------------------------

    def accept_token(self, tid: int) -> None:
        g = self.g
        if tid in self.pieces.eog:
            if self.can_end():
                return
            raise GrammarError(f"end-of-generation token {tid} accepted before the grammar can end")
        piece = self.pieces.piece(tid)
        cps, partial = decode_utf8(piece, self.partial)
        out: list[Stack] = []
        t = g.types
        for s in g.stacks_of(self.sid):
            if not s:
                continue
            pos = s[-1]
            if t[pos] in (G.TOKEN, G.TOKEN_NOT):
                if g.match_token(pos, tid):
                    for n in g.advance(s[:-1] if g.is_end(pos + 1) else s[:-1] + (pos + 1,)):
                        if n not in out:
                            out.append(n)
                continue
            sid = g.intern((s,))
            for c in cps:
                sid = g.step(sid, c)
                if not g.stacks_of(sid):
                    break
            for n in g.stacks_of(sid):
                if n not in out:
                    out.append(n)
        if not out:
            raise GrammarError(f"unexpected empty grammar stack after accepting piece "
                               f"{piece.decode('utf-8', 'replace')!r} ({tid})")
        self.sid = g.intern(tuple(out))
        self.partial = partial
