"""GBNF: the grammar text llama.cpp constrains sampling with, parsed into its rule arrays.

A mirror of `llama_grammar_parser` (src/llama-grammar.cpp): each rule becomes a flat list of
(type, value) elements ending in END, alternatives separated by ALT, groups and repetitions
rewritten into generated rules named `<rule>_<id>` exactly as llama.cpp names and numbers
them, so the rule ids (and the matcher built on them) are llama.cpp's. The checks after the
parse are llama.cpp's too: undefined rules, a missing root and left recursion
(`llama_grammar_init_impl`).

The parser works on code points (llama.cpp walks UTF-8 bytes, decoding one character at a
time; for valid UTF-8 text the two agree). Errors raise LlamacliError with one line: the rule
being parsed, the line and column, and llama.cpp's message.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from ..errors import LlamacliError

MAX_REPETITION_THRESHOLD = 2000  # llama-grammar.cpp's cap on {m,n} and on the rules they expand to
UNBOUNDED = -1


class G(IntEnum):
    """llama_gretype."""
    END = 0             # end of a rule definition
    ALT = 1             # start of an alternate definition
    RULE_REF = 2        # non-terminal: value is a rule id
    CHAR = 3            # terminal: value is a code point
    CHAR_NOT = 4        # inverse class [^...]
    CHAR_RNG_UPPER = 5  # makes the preceding CHAR / CHAR_ALT an inclusive range
    CHAR_ALT = 6        # another char of the same class
    CHAR_ANY = 7        # .
    TOKEN = 8           # <[id]> or <token>
    TOKEN_NOT = 9       # !<[id]> or !<token>


Element = tuple[int, int]  # (G, value)


@dataclass
class Grammar:
    rules: list[list[Element]]   # indexed by rule id; each ends with (END, 0)
    symbol_ids: dict[str, int]   # rule name -> id, generated names included
    root: int                    # id of the start rule

    def name_of(self, rule_id: int) -> str:
        for k, v in self.symbol_ids.items():
            if v == rule_id:
                return k
        return str(rule_id)


def _is_word_char(c: str) -> bool:
    return ("a" <= c <= "z") or ("A" <= c <= "Z") or c == "-" or ("0" <= c <= "9")


def _is_digit(c: str) -> bool:
    return "0" <= c <= "9"


class _ParseError(Exception):
    def __init__(self, message: str, pos: int):
        super().__init__(message)
        self.pos = pos


class Parser:
    """llama_grammar_parser. `tokenize(text) -> list[int]` resolves `<token>` references (the
    vocabulary's tokenizer with parse_special); without it only `<[id]>` references parse."""

    def __init__(self, src: str, tokenize=None):
        self.src = src
        self.tokenize = tokenize
        self.symbol_ids: dict[str, int] = {}
        self.rules: list[list[Element]] = []
        self.rule_name = ""

    # -- characters ----------------------------------------------------------------------------

    def at(self, i: int) -> str:
        """The character at i, '' past the end (the C string's terminating NUL)."""
        return self.src[i] if i < len(self.src) else ""

    def fail(self, message: str, pos: int):
        raise _ParseError(message, pos)

    def parse_space(self, pos: int, newline_ok: bool) -> int:
        """parse_space: blanks and # comments, newlines too when newline_ok."""
        while True:
            c = self.at(pos)
            if c == "#":
                while self.at(pos) not in ("", "\r", "\n"):
                    pos += 1
            elif c in (" ", "\t") or (newline_ok and c in ("\r", "\n")):
                pos += 1
            else:
                return pos

    def parse_name(self, pos: int) -> int:
        end = pos
        while _is_word_char(self.at(end)):
            end += 1
        if end == pos:
            self.fail("expecting name", pos)
        return end

    def parse_int(self, pos: int) -> int:
        end = pos
        while _is_digit(self.at(end)):
            end += 1
        if end == pos:
            self.fail("expecting integer", pos)
        return end

    def parse_hex(self, pos: int, size: int) -> tuple[int, int]:
        value, end = 0, pos
        while end < pos + size and self.at(end) and self.at(end) in "0123456789abcdefABCDEF":
            value = value * 16 + int(self.at(end), 16)
            end += 1
        if end != pos + size:
            self.fail(f"expecting {size} hex chars", pos)
        return value, end

    def parse_char(self, pos: int) -> tuple[int, int]:
        """parse_char: one literal or escaped code point."""
        c = self.at(pos)
        if c == "\\":
            e = self.at(pos + 1)
            if e == "x":
                return self.parse_hex(pos + 2, 2)
            if e == "u":
                return self.parse_hex(pos + 2, 4)
            if e == "U":
                return self.parse_hex(pos + 2, 8)
            simple = {"t": "\t", "r": "\r", "n": "\n", "\\": "\\", '"': '"', "[": "[", "]": "]", "-": "-"}
            if e in simple:
                return ord(simple[e]), pos + 2
            self.fail("unknown escape", pos)
        if c:
            return ord(c), pos + 1
        self.fail("unexpected end of input", pos)

    def parse_token(self, pos: int) -> tuple[int, int]:
        """parse_token: <[id]> or <text>, the text tokenizing to exactly one token."""
        start = pos
        if self.at(pos) != "<":
            self.fail("expecting '<'", pos)
        pos += 1
        if self.at(pos) == "[":
            pos += 1
            end = self.parse_int(pos)
            tid = int(self.src[pos:end])
            if tid > 0xFFFFFFFF:
                self.fail("parsed token id is too big", pos)
            pos = end
            if self.at(pos) != "]":
                self.fail("expecting ']'", pos)
            pos += 1
            if self.at(pos) != ">":
                self.fail("expecting '>'", pos)
            return tid, pos + 1
        if self.tokenize is None:
            self.fail("no vocab to parse token", start)
        while self.at(pos) not in ("", ">"):
            pos += 1
        if self.at(pos) != ">":
            self.fail("expecting '>'", pos)
        pos += 1
        ids = self.tokenize(self.src[start:pos])
        if len(ids) != 1:
            self.fail(f"invalid token '{self.src[start:pos]}'", start)
        return ids[0], pos

    # -- symbols -------------------------------------------------------------------------------

    def get_symbol_id(self, name: str) -> int:
        return self.symbol_ids.setdefault(name, len(self.symbol_ids))

    def generate_symbol_id(self, base: str) -> int:
        next_id = len(self.symbol_ids)
        self.symbol_ids[f"{base}_{next_id}"] = next_id
        return next_id

    def add_rule(self, rule_id: int, rule: list[Element]) -> None:
        while len(self.rules) <= rule_id:
            self.rules.append([])
        self.rules[rule_id] = rule

    # -- structure -----------------------------------------------------------------------------

    def parse_alternates(self, pos: int, rule_name: str, rule_id: int, is_nested: bool) -> int:
        rule: list[Element] = []
        pos = self.parse_sequence(pos, rule_name, rule, is_nested)
        while self.at(pos) == "|":
            rule.append((G.ALT, 0))
            pos = self.parse_space(pos + 1, True)
            pos = self.parse_sequence(pos, rule_name, rule, is_nested)
        rule.append((G.END, 0))
        self.add_rule(rule_id, rule)
        return pos

    def parse_sequence(self, pos: int, rule_name: str, rule: list[Element], is_nested: bool) -> int:
        last_sym_start = len(rule)
        n_prev_rules = 1

        def repeat(min_times: int, max_times: int) -> None:
            """handle_repetitions: S{m,n} -> S (m times) then n-m nested optional rules
            S'(x) ::= S S'(x-1) |, S{m,} -> S (m times) S' with S' ::= S S' |."""
            nonlocal n_prev_rules
            no_max = max_times == UNBOUNDED
            if last_sym_start == len(rule):
                self.fail("expecting preceding item to */+/?/{", pos)
            prev = rule[last_sym_start:]
            total = max_times if (not no_max and max_times > 0) else (min_times if min_times > 0 else 1)
            if n_prev_rules * total > MAX_REPETITION_THRESHOLD:
                self.fail("number of rules that are going to be repeated multiplied by the new repetition "
                          "exceeds sane defaults, please reduce the number of repetitions or rule complexity", pos)
            if min_times == 0:
                del rule[last_sym_start:]
            else:
                for _ in range(1, min_times):
                    rule.extend(prev)
            last_rec = 0
            n_opt = 1 if no_max else max_times - min_times
            for i in range(n_opt):
                rec = list(prev)
                rec_id = self.generate_symbol_id(rule_name)
                if i > 0 or no_max:
                    rec.append((G.RULE_REF, rec_id if no_max else last_rec))
                rec += [(G.ALT, 0), (G.END, 0)]
                self.add_rule(rec_id, rec)
                last_rec = rec_id
            if n_opt > 0:
                rule.append((G.RULE_REF, last_rec))
            n_prev_rules *= total

        while self.at(pos):
            c = self.at(pos)
            if c == '"':  # literal string
                pos += 1
                last_sym_start, n_prev_rules = len(rule), 1
                while self.at(pos) != '"':
                    if not self.at(pos):
                        self.fail("unexpected end of input", pos)
                    cp, pos = self.parse_char(pos)
                    rule.append((G.CHAR, cp))
                pos = self.parse_space(pos + 1, is_nested)
            elif c == "[":  # character class
                pos += 1
                start_type = G.CHAR
                if self.at(pos) == "^":
                    pos += 1
                    start_type = G.CHAR_NOT
                last_sym_start, n_prev_rules = len(rule), 1
                while self.at(pos) != "]":
                    if not self.at(pos):
                        self.fail("unexpected end of input", pos)
                    cp, pos = self.parse_char(pos)
                    rule.append((G.CHAR_ALT if last_sym_start < len(rule) else start_type, cp))
                    if self.at(pos) == "-" and self.at(pos + 1) != "]":
                        if not self.at(pos + 1):
                            self.fail("unexpected end of input", pos + 1)
                        hi, pos = self.parse_char(pos + 1)
                        rule.append((G.CHAR_RNG_UPPER, hi))
                pos = self.parse_space(pos + 1, is_nested)
            elif c in ("<", "!"):  # token reference
                kind = G.TOKEN
                if c == "!":
                    kind = G.TOKEN_NOT
                    pos += 1
                tid, end = self.parse_token(pos)
                last_sym_start, n_prev_rules = len(rule), 1
                rule.append((kind, tid))
                pos = self.parse_space(end, is_nested)
            elif _is_word_char(c):  # rule reference
                end = self.parse_name(pos)
                ref = self.get_symbol_id(self.src[pos:end])
                pos = self.parse_space(end, is_nested)
                last_sym_start, n_prev_rules = len(rule), 1
                rule.append((G.RULE_REF, ref))
            elif c == "(":  # group: a synthesized rule
                pos = self.parse_space(pos + 1, True)
                n_before = len(self.symbol_ids)
                sub = self.generate_symbol_id(rule_name)
                pos = self.parse_alternates(pos, rule_name, sub, True)
                n_prev_rules = max(1, len(self.symbol_ids) - n_before)
                last_sym_start = len(rule)
                rule.append((G.RULE_REF, sub))
                if self.at(pos) != ")":
                    self.fail("expecting ')'", pos)
                pos = self.parse_space(pos + 1, is_nested)
            elif c == ".":
                last_sym_start, n_prev_rules = len(rule), 1
                rule.append((G.CHAR_ANY, 0))
                pos = self.parse_space(pos + 1, is_nested)
            elif c in "*+?":
                pos = self.parse_space(pos + 1, is_nested)
                repeat(*{"*": (0, UNBOUNDED), "+": (1, UNBOUNDED), "?": (0, 1)}[c])
            elif c == "{":
                pos = self.parse_space(pos + 1, is_nested)
                if not _is_digit(self.at(pos)):
                    self.fail("expecting an int", pos)
                end = self.parse_int(pos)
                min_times = int(self.src[pos:end])
                pos = self.parse_space(end, is_nested)
                max_times = UNBOUNDED
                if self.at(pos) == "}":
                    max_times = min_times
                    pos = self.parse_space(pos + 1, is_nested)
                elif self.at(pos) == ",":
                    pos = self.parse_space(pos + 1, is_nested)
                    if _is_digit(self.at(pos)):
                        end = self.parse_int(pos)
                        max_times = int(self.src[pos:end])
                        pos = self.parse_space(end, is_nested)
                    if self.at(pos) != "}":
                        self.fail("expecting '}'", pos)
                    pos = self.parse_space(pos + 1, is_nested)
                else:
                    self.fail("expecting ','", pos)
                if min_times > MAX_REPETITION_THRESHOLD:
                    self.fail("number of repetitions exceeds sane defaults, please reduce the number of repetitions", pos)
                if max_times != UNBOUNDED and max_times > MAX_REPETITION_THRESHOLD:
                    max_times = UNBOUNDED  # as llama.cpp: a huge maximum becomes no maximum
                repeat(min_times, max_times)
            else:
                break
        return pos

    def parse_rule(self, pos: int) -> int:
        end = self.parse_name(pos)
        name = self.src[pos:end]
        self.rule_name = name
        after = self.parse_space(end, False)
        rule_id = self.get_symbol_id(name)
        if self.src[after:after + 3] != "::=":
            self.fail("expecting ::=", after)
        pos = self.parse_space(after + 3, True)
        pos = self.parse_alternates(pos, name, rule_id, False)
        c = self.at(pos)
        if c == "\r":
            pos += 2 if self.at(pos + 1) == "\n" else 1
        elif c == "\n":
            pos += 1
        elif c:
            self.fail("expecting newline or end", pos)
        return self.parse_space(pos, True)

    def parse(self) -> None:
        pos = self.parse_space(0, True)
        while self.at(pos):
            self.rule_name = ""
            pos = self.parse_rule(pos)
        for rule in self.rules:  # llama_grammar_parser::parse's validation
            if not rule:
                raise _ParseError("Undefined rule", -1)
            for kind, value in rule:
                if kind == G.RULE_REF and (value >= len(self.rules) or not self.rules[value]):
                    name = next(k for k, v in self.symbol_ids.items() if v == value)
                    self.rule_name = name
                    raise _ParseError(f"Undefined rule identifier '{name}'", -1)

    def where(self, pos: int) -> str:
        line = self.src.count("\n", 0, pos) + 1
        col = pos - (self.src.rfind("\n", 0, pos) + 1) + 1
        return f"line {line}, column {col}"


def parse_grammar(src: str, root: str = "root", tokenize=None) -> Grammar:
    """llama_grammar_init_impl's parse and checks; raises LlamacliError with one line."""
    p = Parser(src, tokenize)
    try:
        p.parse()
    except RecursionError:
        raise LlamacliError("error parsing grammar: groups nest too deeply") from None
    except _ParseError as e:
        rule = f"rule '{p.rule_name}'" if p.rule_name else "grammar"
        at = f", {p.where(e.pos)}" if e.pos >= 0 else ""
        near = ""
        if e.pos >= 0:
            snippet = p.src[e.pos:e.pos + 20].split("\n")[0]
            near = f" at '{snippet}'" if snippet else " at end of input"
        raise LlamacliError(f"error parsing grammar: {rule}{at}: {e}{near}") from None
    if not p.rules:
        raise LlamacliError("error parsing grammar: the grammar is empty")
    if root not in p.symbol_ids:
        raise LlamacliError(f"grammar does not contain a '{root}' symbol")
    g = Grammar(p.rules, p.symbol_ids, p.symbol_ids[root])
    try:
        bad = left_recursive_rule(g.rules)
    except RecursionError:
        raise LlamacliError("unsupported grammar: its rules nest too deeply to check for left recursion") from None
    if bad is not None:
        raise LlamacliError(f"unsupported grammar, left recursion detected for nonterminal "
                            f"'{g.name_of(bad)}' (index {bad})")
    return g


def _is_end(e: Element) -> bool:
    return e[0] in (G.END, G.ALT)


def left_recursive_rule(rules: list[list[Element]]) -> int | None:
    """llama_grammar_detect_left_recursion over all rules, in id order: the index llama.cpp
    reports, or None."""
    n = len(rules)
    visited, in_progress, may_be_empty = [False] * n, [False] * n, [False] * n

    def detect(i: int) -> bool:
        if in_progress[i]:
            return True
        in_progress[i] = True
        rule = rules[i]
        at_start = True
        for e in rule:  # may the rule produce the empty string?
            if _is_end(e):
                if at_start:
                    may_be_empty[i] = True
                    break
                at_start = True
            else:
                at_start = False
        recurse = True  # into leftmost nonterminals, and on past those that may be empty
        for kind, value in rule:
            if kind == G.RULE_REF and recurse:
                if detect(value):
                    return True
                if not may_be_empty[value]:
                    recurse = False
            elif kind in (G.END, G.ALT):
                recurse = True
            else:
                recurse = False
        in_progress[i] = False
        visited[i] = True
        return False

    for i in range(n):
        if not visited[i] and detect(i):
            return i
    return None
