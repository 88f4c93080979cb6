"""The GBNF parser and the matcher against llama.cpp's own grammar code, and against a slow twin.

tests/golden/grammar/matcher.json comes from scripts/make_grammar_matcher_reference.py, which
drives libllama's llama_grammar_parser / llama_grammar_accept_str /
llama_grammar_reject_candidates_for_stack on llama.cpp's grammars/*.gbnf and a few small
grammars for the corners: the rule arrays and symbol ids must be llama.cpp's, and so must every
verdict on the test pieces (whole and partial UTF-8 characters, after prefixes that may end
inside a character).
"""

import json
import random
from pathlib import Path

import numpy as np
import pytest

from llamacli.errors import LlamacliError
from llamacli.grammar import G, GrammarState, compile_grammar, decode_utf8, parse_grammar
from llamacli.sampling import Sampler, SamplerParams

GOLDEN = json.loads((Path(__file__).parent / "golden" / "grammar" / "matcher.json").read_text())
# the eight grammars of llama.cpp's grammars/ folder, whose texts the golden data carries (CI has
# no llama.cpp tree)
VENDORED = ("arithmetic", "c", "chess", "english", "japanese", "json", "json_arr", "list")


class Pieces:
    """A stand-in vocabulary: token id -> piece bytes, some ids end generation."""

    def __init__(self, pieces: list[bytes], eog=()):
        self.p = pieces
        self.eog = frozenset(eog)
        self.n_vocab = len(pieces)

    def piece(self, tid):
        return self.p[tid]

    def decoded(self, tid, partial):
        return decode_utf8(self.p[tid], partial)


# -- the parser -------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(GOLDEN["grammars"]))
def test_parse_is_llama_cpps(name):
    ref = GOLDEN["grammars"][name]
    g = parse_grammar(ref["text"])
    assert g.symbol_ids == ref["symbols"]
    assert [[[int(t), v] for t, v in r] for r in g.rules] == ref["rules"]


def test_every_vendored_grammar_compiles():
    for name in VENDORED:
        g = compile_grammar(GOLDEN["grammars"][name]["text"])
        assert g.initial_stacks(), name


@pytest.mark.parametrize("name", sorted(GOLDEN["bad"]))
def test_bad_grammar_is_one_line_naming_llama_cpps_error(name):
    ref = GOLDEN["bad"][name]
    assert not (ref["parse_ok"] and ref["init_ok"])  # llama.cpp refuses every one of them
    with pytest.raises(LlamacliError) as e:
        compile_grammar(ref["text"])
    msg = str(e.value)
    assert "\n" not in msg
    their = ref["stderr"].split("error parsing grammar: ", 1)[-1]
    if not ref["parse_ok"]:
        core = their.split(" at ", 1)[0]  # llama.cpp then prints the rest of the text
        assert core in msg and msg.startswith("error parsing grammar: ")
        if "Undefined rule" not in core:
            assert "line " in msg and "column " in msg
    elif "left recursion" in their:
        assert "left recursion detected for nonterminal" in msg and their.rsplit(" ", 1)[1] in msg
    else:
        assert msg == their


def test_error_names_the_rule_and_position():
    with pytest.raises(LlamacliError, match=r"rule 'num', line 2, column 10: unknown escape at '\\q"):
        parse_grammar('root ::= num\nnum ::= "\\q"\n')


def test_repetition_expansion_is_llama_cpps():
    # S{2,4} -> S S S'(2), S'(2) ::= S S'(1) |, S'(1) ::= S |   (llama-grammar.cpp handle_repetitions)
    g = parse_grammar('root ::= "a"{2,4}')
    a = (G.CHAR, ord("a"))
    assert g.rules[0] == [a, a, (G.RULE_REF, 2), (G.END, 0)]
    assert g.rules[1] == [a, (G.ALT, 0), (G.END, 0)]
    assert g.rules[2] == [a, (G.RULE_REF, 1), (G.ALT, 0), (G.END, 0)]
    assert g.symbol_ids == {"root": 0, "root_1": 1, "root_2": 2}


# -- the matcher against llama.cpp -------------------------------------------------------------

def _state_after(cg, prefix: bytes):
    """llama_grammar_accept_str: the prefix's code points through the stacks; None if it dies."""
    st = GrammarState(cg, Pieces([]))
    cps, partial = decode_utf8(prefix, (0, 0))
    for c in cps:
        st.sid = cg.step(st.sid, c)
        if not cg.stacks_of(st.sid):
            return None
    st.partial = partial
    return st


@pytest.mark.parametrize("name", sorted(GOLDEN["grammars"]))
def test_matcher_verdicts_are_llama_cpps(name):
    ref = GOLDEN["grammars"][name]
    cg = compile_grammar(ref["text"])
    for t in ref["tests"]:
        st = _state_after(cg, bytes.fromhex(t["prefix"]))
        v = t["verdict"]
        assert (st is None) == (v is None), t["prefix"]
        if st is None:
            continue
        assert st.can_end() == v["can_end"], t["prefix"]
        got = [st.allows_code_points(0, *decode_utf8(bytes.fromhex(c), st.partial)) for c in t["candidates"]]
        assert got == v["allowed"], (bytes.fromhex(t["prefix"]), [bytes.fromhex(c) for c in t["candidates"]])


# -- the matcher against a slow twin -------------------------------------------------------------

def _slow_match_char(rule, i, c):
    """llama_grammar_match_char on a rule list: (matches, index after the class)."""
    positive = rule[i][0] in (G.CHAR, G.CHAR_ANY)
    found = False
    while True:
        if rule[i + 1][0] == G.CHAR_RNG_UPPER:
            found = found or rule[i][1] <= c <= rule[i + 1][1]
            i += 2
        elif rule[i][0] == G.CHAR_ANY:
            found, i = True, i + 1
        else:
            found = found or rule[i][1] == c
            i += 1
        if rule[i][0] != G.CHAR_ALT:
            return found == positive, i


def _slow_advance(rules, stack):
    """llama_grammar_advance_stack, recursively, stacks as lists of (rule, index)."""
    if not stack:
        return [stack]
    r, i = stack[-1]
    kind = rules[r][i][0]
    if kind != G.RULE_REF:
        return [stack]
    out = []
    sub = rules[r][i][1]
    j = 0
    base = stack[:-1] + ([(r, i + 1)] if rules[r][i + 1][0] not in (G.END, G.ALT) else [])
    while True:
        nxt = base + ([(sub, j)] if rules[sub][j][0] not in (G.END, G.ALT) else [])
        for s in _slow_advance(rules, nxt):
            if s not in out:
                out.append(s)
        while rules[sub][j][0] not in (G.END, G.ALT):
            j += 1
        if rules[sub][j][0] == G.ALT:
            j += 1
        else:
            return out


def _slow_accepts(rules, stack, cps, partial, k=0):
    """llama_grammar_reject_candidates_for_stack for one candidate, written as the recursion it is
    (True: not rejected). Token elements are not used by these grammars."""
    if not stack:
        return k == len(cps) and partial[1] == 0
    r, i = stack[-1]
    if k == len(cps):
        if partial[1] == 0:
            return True
        return _slow_partial(rules[r], i, partial)
    ok, after = _slow_match_char(rules[r], i, cps[k])
    if not ok:
        return False
    nxt = stack[:-1] + ([(r, after)] if rules[r][after][0] not in (G.END, G.ALT) else [])
    return any(_slow_accepts(rules, s, cps, partial, k + 1) for s in _slow_advance(rules, nxt))


def _slow_partial(rule, i, partial):
    """llama_grammar_match_partial_char, transcribed: the first element of the class whose
    range meets the code points the partial sequence can still become decides."""
    positive = rule[i][0] in (G.CHAR, G.CHAR_ANY)
    value, n = partial
    if n < 0 or (n == 1 and value < 2):
        return False
    low = value << (n * 6)
    high = low | ((1 << (n * 6)) - 1)
    if low == 0:
        low = {2: 1 << 11, 3: 1 << 16}.get(n, low)
    while True:
        if rule[i + 1][0] == G.CHAR_RNG_UPPER:
            if rule[i][1] <= high and low <= rule[i + 1][1]:
                return positive
            i += 2
        elif rule[i][0] == G.CHAR_ANY:
            return True
        else:
            if low <= rule[i][1] <= high:
                return positive
            i += 1
        if rule[i][0] != G.CHAR_ALT:
            return not positive


@pytest.mark.parametrize("name", ["arithmetic", "json", "nested", "classes", "unicode", "empty_alt"])
def test_matcher_agrees_with_the_slow_twin_on_random_strings(name):
    text = GOLDEN["grammars"][name]["text"]
    g = parse_grammar(text)
    cg = compile_grammar(text)
    rng = random.Random(name)
    alphabet = list('0123456789abcxyz+-*/() \n"[],{}:.\\tä€日😀')
    init = []
    j = 0
    rule = g.rules[g.root]
    while True:  # the root's alternatives, advanced
        for s in _slow_advance(g.rules, [(g.root, j)] if rule[j][0] not in (G.END, G.ALT) else []):
            if s not in init:
                init.append(s)
        while rule[j][0] not in (G.END, G.ALT):
            j += 1
        if rule[j][0] == G.ALT:
            j += 1
        else:
            break
    for _ in range(150):
        s = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 6))).encode()
        if rng.random() < 0.3 and s[-1] >= 0x80:
            s = s[:-1] or s
        cps, partial = decode_utf8(s, (0, 0))
        st = GrammarState(cg, Pieces([]))
        want = partial[1] >= 0 and any(_slow_accepts(g.rules, stack, cps, partial) for stack in init)
        assert st.allows_code_points(0, cps, partial) == want, s


# -- tokens, EOG and the sampler ---------------------------------------------------------------

def test_token_elements_and_end_of_generation():
    pieces = Pieces([b"yes", b"no", b"<think>", b"", b"y", b"es", b"\xc3", b"\xa9"], eog=[3])
    cg = compile_grammar('root ::= <[2]> ("yes" | "no" | "\\u00e9") !<[1]>?')
    st = GrammarState(cg, pieces)
    assert [st.allows(t) for t in range(8)] == [False, False, True, False, False, False, False, False]
    st.accept_token(2)
    assert [st.allows(t) for t in range(8)] == [True, True, False, False, True, False, True, False]
    st.accept_token(6)  # half of é: the grammar keeps the partial sequence
    assert st.partial == (0x3, 1)
    assert [st.allows(t) for t in range(8)] == [False] * 7 + [True]
    st.accept_token(7)
    assert st.can_end() and st.allows(3)  # complete: EOG allowed, and !<[1]> takes anything but 1
    assert [st.allows(t) for t in range(3)] == [True, False, True]
    with pytest.raises(Exception):
        GrammarState(cg, pieces).accept_token(3)  # EOG before the grammar can end


def _grammar_sampler(params, pieces, text):
    return Sampler(params, pieces.n_vocab, grammar=GrammarState(compile_grammar(text), pieces))


def test_rejected_pick_resamples_with_a_second_draw():
    """common_sampler_sample: the chain picks, the grammar rejects, the chain runs again on the
    masked logits, so the RNG has drawn twice; an accepted pick draws once."""
    pieces = Pieces([b"a", b"b", b"c", b"d"])
    logits = np.array([5.0, 1.0, 0.5, 0.2], np.float32)
    params = SamplerParams(seed=7, top_k=0, top_p=1.0, min_p=0.0)
    s = _grammar_sampler(params, pieces, 'root ::= [bc]')
    plain = Sampler(params, 4)
    assert s.sample(logits) in (1, 2)
    plain.rng.uniform()
    plain.rng.uniform()
    assert s.rng.next_u32() == plain.rng.next_u32()
    s2 = _grammar_sampler(params, pieces, 'root ::= [a-d]')
    plain2 = Sampler(params, 4)
    assert s2.sample(logits) == plain2.sample(logits)
    assert s2.rng.next_u32() == plain2.rng.next_u32()


def test_lazy_mask_keeps_the_top_k_of_the_full_mask():
    rng = np.random.default_rng(0)
    words = [bytes(rng.choice(list(b"abcxyz0189 "), rng.integers(1, 4))) for _ in range(3000)]
    pieces = Pieces(words)
    text = 'root ::= [a-c] [0-9x]*'
    for top_k in (0, 1, 5, 40):
        s = _grammar_sampler(SamplerParams(top_k=top_k, seed=1), pieces, text)
        lg = rng.standard_normal(len(words)).astype(np.float32)
        lg[::7] = lg[1]  # ties
        got = s._grammar_mask(lg, s.grammar)
        full = np.where([s.grammar.allows(t) for t in range(len(words))], lg, -np.inf).astype(np.float32)
        k = top_k if top_k > 0 else len(words)
        order_full = np.lexsort((np.arange(len(words)), -full))[:k]
        order_got = np.lexsort((np.arange(len(words)), -got))[:k]
        assert np.array_equal(full[order_full], got[order_got])
        assert np.array_equal(order_full[np.isfinite(full[order_full])], order_got[np.isfinite(got[order_got])])


@pytest.mark.parametrize("name", ["json", "c", "classes", "unicode", "repeats"])
def test_prefilter_never_drops_an_allowed_token(name):
    """GrammarState.prefilter only skips tokens that allows() rejects, in every state reached."""
    ref = GOLDEN["grammars"][name]
    vocab = sorted({bytes.fromhex(c) for t in ref["tests"] for c in t["candidates"]}) + [b"", b"\0x"]
    pieces = Pieces(vocab, eog=[len(vocab) - 2])
    cg = compile_grammar(ref["text"])
    checked = 0
    for t in ref["tests"]:
        st = _state_after(cg, bytes.fromhex(t["prefix"]))
        if st is None:
            continue
        st.pieces = pieces
        keep = st.prefilter()
        if keep is None:
            continue
        allowed = np.array([st.allows(tid) for tid in range(len(vocab))])
        assert not (allowed & ~keep).any(), t["prefix"]
        checked += int((~keep).sum())
    assert checked > 0  # it does skip tokens
