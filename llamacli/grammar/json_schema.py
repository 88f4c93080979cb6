"""JSON schema to GBNF, as llama.cpp's common/json-schema-to-grammar.cpp writes it.

Two steps, as there: the schema is first read into a small tree of typed nodes
(`common_chat_schema_from_json`, common/json-schema.cpp: which keyword decides a node's kind,
bounds rounded inwards, local $refs resolved), then `common_chat_schema_converter` visits the
tree and adds rules. The rules are kept in a dict and printed sorted by name (a std::map in
llama.cpp), one `name ::= body` a line, so the text is llama.cpp's byte for byte
(tests/test_grammar_schema.py compares it with the output of llama.cpp's own converter).

What the converter supports is what llama.cpp supports: type (also a list), properties,
required, additionalProperties, enum, const, items (a schema or a tuple), prefixItems,
minItems/maxItems, minLength/maxLength, pattern (an anchored regex, turned into rules),
the formats date, time, date-time and uuid, integer minimum/maximum/exclusiveMinimum/
exclusiveMaximum (number bounds are not enforced by llama.cpp either), local $ref,
anyOf/oneOf/allOf.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field

from ..errors import LlamacliError

INT64_MIN, INT64_MAX = -(2 ** 63), 2 ** 63 - 1
INT_MAX = 2 ** 31 - 1

# -- the schema tree (common/json-schema.h) ---------------------------------------------------

ANY, REF, ANY_OF, ALL_OF, CONST, ENUM, NULL, BOOLEAN, NUMBER, INTEGER, STRING, ARRAY, TUPLE, OBJECT = (
    "any", "ref", "anyOf", "allOf", "const", "enum", "null", "boolean", "number", "integer", "string",
    "array", "tuple", "object")
FORMAT_NONE, FORMAT_UUID, FORMAT_DATE, FORMAT_TIME, FORMAT_DATE_TIME = range(5)


@dataclass
class Node:
    kind: str
    children: list["Node"] = field(default_factory=list)     # anyOf / allOf alternatives, tuple items
    value: object = None                                     # const value
    values: list = field(default_factory=list)               # enum values
    ref: str = ""
    target: "Node | None" = None                             # a ref's node, set once all are built
    minimum: int = INT64_MIN                                 # integer bounds
    maximum: int = INT64_MAX
    pattern: str = ""                                        # string
    format: int = FORMAT_NONE
    min_length: int = 0
    max_length: int = -1
    items: "Node | None" = None                              # array
    min_items: int = 0
    max_items: int = -1
    properties: list[tuple[str, "Node", bool]] = field(default_factory=list)  # object: name, schema, required
    additional: "Node | None" = None                         # object: None when not allowed


class SchemaError(LlamacliError):
    pass


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return (isinstance(v, (int, float))) and not isinstance(v, bool)


class _Builder:
    """common_chat_schema_builder."""

    def __init__(self, root):
        self.root = root
        self.refs: dict[str, Node | None] = {}
        self.pending: list[Node] = []

    @staticmethod
    def fail(path: str, msg: str):
        raise SchemaError(f"JSON schema error at {path}: {msg}")

    def get_count(self, schema: dict, key: str, path: str, default: int) -> int:
        if key not in schema:
            return default
        v = schema[key]
        if not _is_int(v) or v < 0:
            self.fail(path, f"{key} must be a non-negative integer")
        return v

    def get_bound(self, schema: dict, key: str, path: str, round_up: bool) -> int:
        v = schema[key]
        if _is_int(v):
            return v
        if not _is_number(v):
            self.fail(path, f"{key} must be a number")
        return int(math.ceil(v) if round_up else math.floor(v))

    def get_format(self, schema: dict, path: str) -> int:
        if "format" not in schema:
            return FORMAT_NONE
        f = schema["format"]
        if not isinstance(f, str):
            self.fail(path, "format must be a string")
        if f == "date":
            return FORMAT_DATE
        if f == "time":
            return FORMAT_TIME
        if f == "date-time":
            return FORMAT_DATE_TIME
        if f == "uuid" or (len(f) == 5 and f.startswith("uuid") and "1" <= f[4] <= "5"):
            return FORMAT_UUID
        return FORMAT_NONE

    def resolve_ref(self, ref: str, path: str):
        target = self.root
        for sel in ref[1:].split("/")[1:]:
            if isinstance(target, dict) and sel in target:
                target = target[sel]
            elif isinstance(target, list):
                idx = int(sel) if sel.isdigit() else len(target)
                if idx >= len(target):
                    self.fail(path, f"cannot resolve $ref {ref}, {sel} is out of range")
                target = target[idx]
            else:
                self.fail(path, f"cannot resolve $ref {ref}, {sel} not found")
        return target

    def build_ref(self, value, path: str) -> Node:
        if not isinstance(value, str):
            self.fail(path, "$ref must be a string")
        if not value.startswith("#/"):
            self.fail(path, f"unsupported $ref {value}, only references into the same document are supported")
        if value not in self.refs:
            self.refs[value] = None  # a cycle back to this $ref stops here
            self.refs[value] = self.build(self.resolve_ref(value, path), value)
        node = Node(REF, ref=value)
        self.pending.append(node)
        return node

    def build_alternatives(self, kind: str, alts, path: str) -> Node:
        if not isinstance(alts, list):
            self.fail(path, "must be an array of schemas")
        if not alts:
            self.fail(path, "must not be empty")
        return Node(kind, children=[self.build(a, f"{path}/{i}") for i, a in enumerate(alts)])

    def build_object(self, schema: dict, path: str) -> Node:
        node = Node(OBJECT)
        required = set()
        if isinstance(schema.get("required"), list):
            required = {n for n in schema["required"] if isinstance(n, str)}
        if "properties" in schema:
            props = schema["properties"]
            if not isinstance(props, dict):
                self.fail(path, "properties must be an object")
            for name, prop in props.items():
                node.properties.append((name, self.build(prop, f"{path}/properties/{name}"), name in required))
        if "additionalProperties" in schema:
            add = schema["additionalProperties"]
            if isinstance(add, bool):
                if add:
                    node.additional = Node(ANY)
            elif isinstance(add, dict):
                node.additional = self.build(add, f"{path}/additionalProperties")
            else:
                self.fail(path, "additionalProperties must be a boolean or a schema")
        elif "properties" not in schema:
            node.additional = Node(ANY)  # {"type": "object"} alone accepts any object
        return node

    def build_array(self, schema: dict, path: str) -> Node:
        node = Node(ARRAY)
        if "items" in schema or "prefixItems" in schema:
            key = "items" if "items" in schema else "prefixItems"
            items = schema[key]
            if isinstance(items, list):
                return Node(TUPLE, children=[self.build(it, f"{path}/{key}/{i}") for i, it in enumerate(items)])
            node.items = self.build(items, f"{path}/{key}")
        else:
            node.items = Node(ANY)
        node.min_items = self.get_count(schema, "minItems", path, 0)
        node.max_items = self.get_count(schema, "maxItems", path, -1)
        return node

    def build_string(self, schema: dict, path: str) -> Node:
        node = Node(STRING)
        if "pattern" in schema:
            if not isinstance(schema["pattern"], str):
                self.fail(path, "pattern must be a string")
            node.pattern = schema["pattern"]
        node.format = self.get_format(schema, path)
        node.min_length = self.get_count(schema, "minLength", path, 0)
        node.max_length = self.get_count(schema, "maxLength", path, -1)
        return node

    def build_integer(self, schema: dict, path: str) -> Node:
        node = Node(INTEGER)
        if "minimum" in schema:
            node.minimum = self.get_bound(schema, "minimum", path, True)
        elif "exclusiveMinimum" in schema:
            node.minimum = self.get_bound(schema, "exclusiveMinimum", path, False) + 1
        if "maximum" in schema:
            node.maximum = self.get_bound(schema, "maximum", path, False)
        elif "exclusiveMaximum" in schema:
            node.maximum = self.get_bound(schema, "exclusiveMaximum", path, True) - 1
        return node

    def build(self, schema, path: str) -> Node:
        """build_node: the keyword that decides, in llama.cpp's order."""
        if not isinstance(schema, dict):
            self.fail(path, "schema must be an object")
        if "$ref" in schema:
            return self.build_ref(schema["$ref"], path)
        if "oneOf" in schema or "anyOf" in schema:
            key = "oneOf" if "oneOf" in schema else "anyOf"
            return self.build_alternatives(ANY_OF, schema[key], f"{path}/{key}")
        type_ = schema.get("type")
        if isinstance(type_, list):  # {"type": [a, b], ...} is anyOf [{"type": a, ...}, {"type": b, ...}]
            if not type_:
                self.fail(path, "type must not be empty")
            alts = []
            for i, t in enumerate(type_):
                alt = dict(schema)
                alt["type"] = t
                alts.append(self.build(alt, f"{path}/type/{i}"))
            return Node(ANY_OF, children=alts)
        if "const" in schema:
            return Node(CONST, value=schema["const"])
        if "enum" in schema:
            values = schema["enum"]
            if not isinstance(values, list) or not values:
                self.fail(path, "enum must be a non-empty array")
            return Node(ENUM, values=list(values))
        if type_ is not None and not isinstance(type_, str):
            self.fail(path, "type must be a string or an array of strings")
        name = type_ or ""
        has_properties = "properties" in schema or (
            "additionalProperties" in schema and schema["additionalProperties"] is not True)
        if not name:
            if has_properties:
                return self.build_object(schema, path)
            if "allOf" in schema:
                return self.build_alternatives(ALL_OF, schema["allOf"], f"{path}/allOf")
            if "items" in schema or "prefixItems" in schema:
                return self.build_array(schema, path)
            if ("pattern" in schema or "minLength" in schema or "maxLength" in schema
                    or self.get_format(schema, path) != FORMAT_NONE):
                return self.build_string(schema, path)
            return Node(ANY)
        if name == "object":
            if not has_properties and "allOf" in schema:
                return self.build_alternatives(ALL_OF, schema["allOf"], f"{path}/allOf")
            return self.build_object(schema, path)
        if name == "string":
            if "allOf" in schema:
                return self.build_alternatives(ALL_OF, schema["allOf"], f"{path}/allOf")
            return self.build_string(schema, path)
        if name == "array":
            return self.build_array(schema, path)
        if name == "integer":
            return self.build_integer(schema, path)
        simple = {"number": NUMBER, "boolean": BOOLEAN, "null": NULL}
        if name in simple:
            return Node(simple[name])
        self.fail(path, f"unrecognized type {name}")

    def build_document(self) -> Node:
        root = self.build(self.root, "#")
        for node in self.pending:
            node.target = self.refs[node.ref]
        return root


# -- rules text helpers -----------------------------------------------------------------------

SPACE_RULE = '| " " | "\\n"{1,2} [ \\t]{0,20}'

PRIMITIVE_RULES: dict[str, tuple[str, list[str]]] = {
    "boolean": ('("true" | "false")', []),
    "decimal-part": ("[0-9]{1,16}", []),
    "integral-part": ("[0] | [1-9] [0-9]{0,15}", []),
    "number": ('("-"? integral-part) ("." decimal-part)? ([eE] [-+]? integral-part)?', ["integral-part", "decimal-part"]),
    "integer": ('("-"? integral-part)', ["integral-part"]),
    "value": ("object | array | string | number | boolean | null", ["object", "array", "string", "number", "boolean", "null"]),
    "object": ('"{" space ( string ":" space value ("," space string ":" space value)* )? space "}"', ["string", "value"]),
    "array": ('"[" space ( value ("," space value)* )? space "]"', ["value"]),
    "uuid": ('"\\"" [0-9a-fA-F]{8} "-" [0-9a-fA-F]{4} "-" [0-9a-fA-F]{4} "-" [0-9a-fA-F]{4} "-" [0-9a-fA-F]{12} "\\""', []),
    "char": ('[^"\\\\\\x7F\\x00-\\x1F] | [\\\\] (["\\\\bfnrt] | "u" [0-9a-fA-F]{4})', []),
    "string": ('"\\"" char* "\\""', ["char"]),
    "null": ('"null"', []),
}

STRING_FORMAT_RULES: dict[str, tuple[str, list[str]]] = {
    "date": ('[0-9]{4} "-" ( "0" [1-9] | "1" [0-2] ) "-" ( "0" [1-9] | [1-2] [0-9] | "3" [0-1] )', []),
    "time": ('([01] [0-9] | "2" [0-3]) ":" [0-5] [0-9] ":" [0-5] [0-9] ( "." [0-9]{3} )? ( "Z" | ( "+" | "-" ) '
             '( [01] [0-9] | "2" [0-3] ) ":" [0-5] [0-9] )', []),
    "date-time": ('date "T" time', ["date", "time"]),
    "date-string": ('"\\"" date "\\""', ["date"]),
    "time-string": ('"\\"" time "\\""', ["time"]),
    "date-time-string": ('"\\"" date-time "\\""', ["date-time"]),
}

RESERVED_NAMES = {"root", *PRIMITIVE_RULES, *STRING_FORMAT_RULES}
INVALID_RULE_CHARS_RE = re.compile(r"[^a-zA-Z0-9-]+")
GRAMMAR_LITERAL_ESCAPES = {"\r": "\\r", "\n": "\\n", '"': '\\"', "-": "\\-", "]": "\\]", "\\": "\\\\"}
MAX_PATTERN_DEPTH = 100
NON_LITERAL_SET = set("|.()[]{}*+?^$")
ESCAPED_IN_REGEXPS_BUT_NOT_IN_LITERALS = set("^$.[](){}|*+?")


def format_literal(literal: str) -> str:
    """format_literal: a GBNF string literal (\\r \\n \" \\\\ escaped)."""
    return '"' + re.sub(r'[\r\n"\\]', lambda m: GRAMMAR_LITERAL_ESCAPES[m.group(0)], literal) + '"'


def json_dump(value) -> str:
    """common_json::dump(): compact, keys in document order, non-ASCII kept."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def build_repetition(item_rule: str, min_items: int, max_items: int, separator_rule: str = "") -> str:
    """build_repetition; max_items INT_MAX means unbounded."""
    has_max = max_items != INT_MAX
    if max_items == 0:
        return ""
    if min_items == 0 and max_items == 1:
        return item_rule + "?"
    if not separator_rule:
        if min_items == 1 and not has_max:
            return item_rule + "+"
        if min_items == 0 and not has_max:
            return item_rule + "*"
        return item_rule + "{" + str(min_items) + "," + (str(max_items) if has_max else "") + "}"
    result = item_rule + " " + build_repetition("(" + separator_rule + " " + item_rule + ")",
                                                0 if min_items == 0 else min_items - 1,
                                                max_items - 1 if has_max else max_items)
    if min_items == 0:
        result = "(" + result + ")?"
    return result


def build_min_max_int(min_value: int, max_value: int, out: list[str], decimals_left: int = 16,
                      top_level: bool = True) -> None:
    """build_min_max_int: integer bounds as digit rules, appended to `out`."""
    has_min, has_max = min_value != INT64_MIN, max_value != INT64_MAX

    def digit_range(lo: str, hi: str) -> None:
        out.append("[" + (lo if lo == hi else lo + "-" + hi) + "]")

    def more_digits(lo: int, hi: int) -> None:
        out.append("[0-9]")
        if lo == hi == 1:
            return
        out.append("{" + str(lo))
        if hi != lo:
            out.append(",")
            if hi != INT_MAX:
                out.append(str(hi))
        out.append("}")

    def uniform_range(frm: str, to: str) -> None:
        i = 0
        while i < len(frm) and i < len(to) and frm[i] == to[i]:
            i += 1
        if i > 0:
            out.append('"' + frm[:i] + '"')
        if i < len(frm) and i < len(to):
            if i > 0:
                out.append(" ")
            sub_len = len(frm) - i - 1
            if sub_len > 0:
                frm_sub, to_sub = frm[i + 1:], to[i + 1:]
                zeros, nines = "0" * sub_len, "9" * sub_len
                to_reached = False
                out.append("(")
                if frm_sub == zeros:
                    digit_range(frm[i], chr(ord(to[i]) - 1))
                    out.append(" ")
                    more_digits(sub_len, sub_len)
                else:
                    out.append("[" + frm[i] + "] ")
                    out.append("(")
                    uniform_range(frm_sub, nines)
                    out.append(")")
                    if ord(frm[i]) < ord(to[i]) - 1:
                        out.append(" | ")
                        if to_sub == nines:
                            digit_range(chr(ord(frm[i]) + 1), to[i])
                            to_reached = True
                        else:
                            digit_range(chr(ord(frm[i]) + 1), chr(ord(to[i]) - 1))
                        out.append(" ")
                        more_digits(sub_len, sub_len)
                if not to_reached:
                    out.append(" | ")
                    digit_range(to[i], to[i])
                    out.append(" ")
                    uniform_range(zeros, to_sub)
                out.append(")")
            else:
                out.append("[" + frm[i] + "-" + to[i] + "]")

    if has_min and has_max:
        if min_value < 0 and max_value < 0:
            out.append('"-" (')
            build_min_max_int(-max_value, -min_value, out, decimals_left, True)
            out.append(")")
            return
        if min_value < 0:
            out.append('"-" (')
            build_min_max_int(0, -min_value, out, decimals_left, True)
            out.append(") | ")
            min_value = 0
        min_s, max_s = str(min_value), str(max_value)
        for digits in range(len(min_s), len(max_s)):
            uniform_range(min_s, "9" * digits)
            min_s = "1" + "0" * digits
            out.append(" | ")
        uniform_range(min_s, max_s)
        return

    less_decimals = max(decimals_left - 1, 1)
    if has_min:
        if min_value < 0:
            out.append('"-" (')
            build_min_max_int(INT64_MIN, -min_value, out, decimals_left, False)
            out.append(") | [0] | [1-9] ")
            more_digits(0, decimals_left - 1)
        elif min_value == 0:
            if top_level:
                out.append("[0] | [1-9] ")
                more_digits(0, less_decimals)
            else:
                more_digits(1, decimals_left)
        elif min_value <= 9:
            c = chr(ord("0") + min_value)
            start = "1" if top_level else "0"
            if c > start:
                digit_range(start, chr(ord(c) - 1))
                out.append(" ")
                more_digits(1, less_decimals)
                out.append(" | ")
            digit_range(c, "9")
            out.append(" ")
            more_digits(0, less_decimals)
        else:
            min_s = str(min_value)
            n = len(min_s)
            c = min_s[0]
            if c > "1":
                digit_range("1" if top_level else "0", chr(ord(c) - 1))
                out.append(" ")
                more_digits(n, less_decimals)
                out.append(" | ")
            digit_range(c, c)
            out.append(" (")
            build_min_max_int(int(min_s[1:]), INT64_MAX, out, less_decimals, False)
            out.append(")")
            if c < "9":
                out.append(" | ")
                digit_range(chr(ord(c) + 1), "9")
                out.append(" ")
                more_digits(n - 1, less_decimals)
        return
    if has_max:
        if max_value >= 0:
            if top_level:
                out.append('"-" [1-9] ')
                more_digits(0, less_decimals)
                out.append(" | ")
            build_min_max_int(0, max_value, out, decimals_left, True)
        else:
            out.append('"-" (')
            build_min_max_int(-max_value, INT64_MAX, out, decimals_left, False)
            out.append(")")
        return
    raise SchemaError("At least one of min_value or max_value must be set")


def gbnf_escape_length(pattern: str, pos: int) -> int:
    """gbnf_escape_length: length of a GBNF escape at pos (as parse_char reads it), else 0."""
    if pos + 1 >= len(pattern) or pattern[pos] != "\\":
        return 0
    e = pattern[pos + 1]
    n_hex = {"x": 2, "u": 4, "U": 8}.get(e)
    if n_hex is None:
        return 2 if e in 'trn\\"[]-' else 0
    if pos + 2 + n_hex > len(pattern):
        return 0
    if not all(h in "0123456789abcdefABCDEF" for h in pattern[pos + 2:pos + 2 + n_hex]):
        return 0
    return 2 + n_hex


def _stoi(s: str) -> int:
    """std::stoi: leading blanks, a sign, digits, anything after ignored; no digits throws."""
    m = re.match(r"[ \t\n\v\f\r]*([+-]?[0-9]+)", s)
    if not m:
        raise ValueError(s)
    v = int(m.group(1))
    if not -(2 ** 31) <= v <= INT_MAX:
        raise ValueError(s)
    return v


class _UnsupportedPattern(Exception):
    pass


class _InvalidPattern(Exception):
    pass


def _trie(strings: list[str]) -> list[dict]:
    """common_trie over code points: nodes of {children: {cp: index}, end: bool}."""
    nodes = [{"children": {}, "end": False}]
    for w in strings:
        cur = 0
        for ch in w:
            cp = ord(ch)
            nxt = nodes[cur]["children"].get(cp)
            if nxt is None:
                nxt = nodes[cur]["children"][cp] = len(nodes)
                nodes.append({"children": {}, "end": False})
            cur = nxt
        nodes[cur]["end"] = True
    return nodes


# -- the converter (common_chat_schema_converter) ---------------------------------------------

class SchemaConverter:
    def __init__(self, dotall: bool = False):
        self.dotall = dotall
        self.rules: dict[str, str] = {"space": SPACE_RULE}
        self.refs_being_resolved: set[str] = set()
        self.errors: list[str] = []
        self.warnings: list[str] = []

    def add_rule(self, name: str, rule: str) -> str:
        esc = INVALID_RULE_CHARS_RE.sub("-", name)
        if esc not in self.rules or self.rules[esc] == rule:
            self.rules[esc] = rule
            return esc
        i = 0
        while f"{esc}{i}" in self.rules and self.rules[f"{esc}{i}"] != rule:
            i += 1
        key = f"{esc}{i}"
        self.rules[key] = rule
        return key

    def add_primitive(self, name: str, rule: tuple[str, list[str]]) -> str:
        n = self.add_rule(name, rule[0])
        for dep in rule[1]:
            dep_rule = PRIMITIVE_RULES.get(dep) or STRING_FORMAT_RULES.get(dep)
            if dep_rule is None:
                self.errors.append(f"Rule {dep} not known")
                continue
            if dep not in self.rules:
                self.add_primitive(dep, dep_rule)
        return n

    def generate_union_rule(self, name: str, alts: list[Node]) -> str:
        return " | ".join(self.visit(a, name + ("alternative-" if not name else "-") + str(i))
                          for i, a in enumerate(alts))

    # -- pattern ---------------------------------------------------------------------------

    def visit_pattern(self, pattern: str, name: str) -> str:
        snapshot = dict(self.rules)
        try:
            return self.pattern_to_rule(pattern, name)
        except _UnsupportedPattern as e:
            self.rules = snapshot
            self.warnings.append(f"pattern {pattern} is not supported ({e}), accepting any string")
            return self.add_rule(name, self.add_primitive("string", PRIMITIVE_RULES["string"]))
        except _InvalidPattern as e:
            self.rules = snapshot
            self.errors.append(f"Invalid pattern {pattern}: {e}")
            return ""

    def pattern_to_rule(self, pattern: str, name: str) -> str:
        """_pattern_to_rule: an anchored regex, literal runs merged, groups, classes, repeats."""
        if len(pattern) < 2 or pattern[0] != "^" or pattern[-1] != "$":
            raise _UnsupportedPattern("not anchored with '^' and '$'")
        sub = pattern[1:-1]
        sub_rule_ids: dict[str, str] = {}
        n = len(sub)
        state = {"i": 0, "depth": 0}

        def to_rule(ls: tuple[str, bool]) -> str:
            return f'"{ls[0]}"' if ls[1] else ls[0]

        def get_dot() -> str:
            return self.add_rule("dot", "[\\U00000000-\\U0010FFFF]" if self.dotall else "[^\\x0A\\x0D]")

        def transform() -> tuple[str, bool]:
            seq: list[tuple[str, bool]] = []

            def join_seq() -> tuple[str, bool]:
                ret: list[tuple[str, bool]] = []
                literal = ""
                for item, is_lit in seq:
                    if is_lit:
                        literal += item
                    else:
                        if literal:
                            ret.append((literal, True))
                            literal = ""
                        ret.append((item, False))
                if literal:
                    ret.append((literal, True))
                return " ".join(to_rule(x) for x in ret), False

            while state["i"] < n:
                i = state["i"]
                c = sub[i]
                if c == ".":
                    seq.append((get_dot(), False))
                    state["i"] += 1
                elif c == "(":
                    i += 1
                    if i < n and sub[i] == "?":
                        if i + 1 < n and sub[i + 1] == ":":
                            i += 2
                        else:
                            raise _UnsupportedPattern("unsupported group syntax")
                    state["i"] = i
                    state["depth"] += 1
                    if state["depth"] > MAX_PATTERN_DEPTH:
                        raise _UnsupportedPattern("pattern nesting too deep")
                    seq.append(("(" + to_rule(transform()) + ")", False))
                elif c == ")":
                    state["i"] += 1
                    if state["depth"] == 0:
                        raise _InvalidPattern("unbalanced parentheses")
                    state["depth"] -= 1
                    return join_seq()
                elif c in "^$":
                    raise _UnsupportedPattern("anchor inside the pattern")
                elif c == "[":
                    sq = c
                    i += 1
                    while i < n and sub[i] != "]":
                        if sub[i] == "\\":
                            el = gbnf_escape_length(sub, i)
                            if el == 0:
                                raise _UnsupportedPattern("unsupported escape in character class: " + sub[i:i + 2])
                            sq += sub[i:i + el]
                            i += el
                        else:
                            sq += sub[i]
                            i += 1
                    if i >= n:
                        raise _InvalidPattern("unterminated character class")
                    sq += "]"
                    state["i"] = i + 1
                    seq.append((sq, False))
                elif c == "|":
                    seq.append(("|", False))
                    state["i"] += 1
                elif c in "*+?":
                    if not seq:
                        raise _InvalidPattern("nothing to repeat")
                    seq[-1] = (to_rule(seq[-1]) + c, False)
                    state["i"] += 1
                elif c == "{":
                    curly = c
                    i += 1
                    while i < n and sub[i] != "}":
                        curly += sub[i]
                        i += 1
                    if i >= n:
                        raise _UnsupportedPattern("unterminated curly brackets")
                    curly += "}"
                    state["i"] = i + 1
                    nums = curly[1:-1].split(",")
                    min_times, max_times = 0, INT_MAX
                    if len(nums) not in (1, 2):
                        raise _UnsupportedPattern("wrong number of values in curly brackets")
                    try:
                        if len(nums) == 1:
                            min_times = max_times = _stoi(nums[0])
                        else:
                            if nums[0]:
                                min_times = _stoi(nums[0])
                            if nums[1]:
                                max_times = _stoi(nums[1])
                    except ValueError:
                        raise _UnsupportedPattern("invalid number in curly brackets") from None
                    if not seq:
                        raise _InvalidPattern("nothing to repeat")
                    last, is_lit = seq[-1]
                    if not is_lit:
                        if last not in sub_rule_ids:
                            sub_rule_ids[last] = ""
                        if not sub_rule_ids[last]:
                            sub_rule_ids[last] = self.add_rule(f"{name}-{len(sub_rule_ids)}", last)
                        last = sub_rule_ids[last]
                    seq[-1] = (build_repetition(f'"{last}"' if is_lit else last, min_times, max_times, ""), False)
                else:
                    literal = ""
                    while i < n:
                        if sub[i] == "\\":
                            if i == n - 1:
                                raise _InvalidPattern("trailing backslash")
                            nxt = sub[i + 1]
                            if nxt in ESCAPED_IN_REGEXPS_BUT_NOT_IN_LITERALS:
                                literal += nxt
                                i += 2
                            else:
                                el = gbnf_escape_length(sub, i)
                                if el == 0:
                                    raise _UnsupportedPattern("unsupported escape: " + sub[i:i + 2])
                                literal += sub[i:i + el]
                                i += el
                        elif sub[i] == '"':
                            literal += '\\"'
                            i += 1
                        elif sub[i] not in NON_LITERAL_SET and (
                                i == n - 1 or not literal or sub[i + 1] == "." or sub[i + 1] not in NON_LITERAL_SET):
                            literal += sub[i]
                            i += 1
                        else:
                            break
                    state["i"] = i
                    if not literal:
                        raise _UnsupportedPattern("unsupported character: " + c)
                    seq.append((literal, True))
            return join_seq()

        rule = to_rule(transform())
        if state["depth"] != 0:
            raise _InvalidPattern("unbalanced parentheses")
        return self.add_rule(name, '"\\"" (' + rule + ') "\\""')

    # -- objects ---------------------------------------------------------------------------

    def not_strings(self, strings: list[str]) -> str:
        """_not_strings: a JSON string that is none of `strings`."""
        nodes = _trie(strings)
        char_rule = self.add_primitive("char", PRIMITIVE_RULES["char"])
        out = ['["] ( ']

        def visit(idx: int) -> None:
            node = nodes[idx]
            rejects = ""
            first = True
            for cp in sorted(node["children"]):
                child = node["children"][cp]
                c = chr(cp)
                rejects += c
                if first:
                    first = False
                else:
                    out.append(" | ")
                out.append("[" + c + "]")
                if nodes[child]["children"]:
                    out.append(" (")
                    visit(child)
                    out.append(")")
                else:
                    out.append(" " + char_rule + "+")
            if node["children"]:
                out.append(' | [^"' + rejects + "] " + char_rule + "*")

        visit(0)
        out.append(" )")
        if not nodes[0]["end"]:
            out.append("?")
        out.append(' ["]')
        return "".join(out)

    def resolve_ref(self, node: Node) -> str:
        frag = node.ref[node.ref.find("#") + 1:] if "#" in node.ref else node.ref
        ref_name = "ref" + INVALID_RULE_CHARS_RE.sub("-", frag)
        if ref_name not in self.rules and node.ref not in self.refs_being_resolved:
            if node.target is None:
                self.errors.append(f"Unresolved $ref {node.ref}")
                return ""
            self.refs_being_resolved.add(node.ref)
            ref_name = self.visit(node.target, ref_name)
            self.refs_being_resolved.discard(node.ref)
        return ref_name

    def build_object_rule(self, properties: list[tuple[str, Node]], required: set[str], name: str,
                          additional: Node | None) -> str:
        required_props: list[str] = []
        optional_props: list[str] = []
        kv_names: dict[str, str] = {}
        prop_names: list[str] = []
        dash = "-" if name else ""
        for prop_name, prop_schema in properties:
            prop_rule = self.visit(prop_schema, name + dash + prop_name)
            kv_names[prop_name] = self.add_rule(name + dash + prop_name + "-kv",
                                                format_literal(json_dump(prop_name)) + ' space ":" space ' + prop_rule)
            (required_props if prop_name in required else optional_props).append(prop_name)
            prop_names.append(prop_name)
        if additional is not None:
            sub_name = name + dash + "additional"
            value_rule = (self.visit(additional, sub_name + "-value") if additional.kind != ANY
                          else self.add_primitive("value", PRIMITIVE_RULES["value"]))
            key_rule = (self.add_primitive("string", PRIMITIVE_RULES["string"]) if not prop_names
                        else self.add_rule(sub_name + "-k", self.not_strings(prop_names)))
            kv_names["*"] = self.add_rule(sub_name + "-kv", key_rule + ' ":" space ' + value_rule)
            optional_props.append("*")
        if not required_props and not optional_props:
            return '"{" space "}"'
        rule = '"{" space '
        rule += ' "," space '.join(kv_names[k] for k in required_props)
        if optional_props:
            rule += " ("
            if required_props:
                rule += ' "," space ( '

            def recursive_refs(ks: list[str], first_is_optional: bool) -> str:
                if not ks:
                    return ""
                k = ks[0]
                kv = kv_names[k]
                comma_ref = '( "," space ' + kv + " )"
                if first_is_optional:
                    res = comma_ref + ("*" if k == "*" else "?")
                else:
                    res = kv + (" " + comma_ref + "*" if k == "*" else "")
                if len(ks) > 1:
                    res += " " + self.add_rule(name + dash + k + "-rest", recursive_refs(ks[1:], True))
                return res

            rule += " | ".join(recursive_refs(optional_props[i:], False) for i in range(len(optional_props)))
            if required_props:
                rule += " )"
            rule += " )?"
        rule += ' space "}"'
        return rule

    # -- visit -----------------------------------------------------------------------------

    def visit_primitive(self, rule_name: str, type_: str) -> str:
        return self.add_primitive("root" if rule_name == "root" else type_, PRIMITIVE_RULES[type_])

    def visit_all_of(self, node: Node, name: str, rule_name: str) -> str:
        required: set[str] = set()
        properties: list[tuple[str, Node]] = []
        enum_values: dict[str, int] = {}

        def add(comp: Node, is_required: bool) -> None:
            if comp.kind == REF:
                if comp.target is not None:
                    add(comp.target, is_required)
            elif comp.kind == OBJECT:
                for pname, pschema, _ in comp.properties:
                    properties.append((pname, pschema))
                    if is_required:
                        required.add(pname)
            elif comp.kind == ENUM:
                for v in comp.values:
                    key = format_literal(json_dump(v))
                    enum_values[key] = enum_values.get(key, 0) + 1

        for child in node.children:
            if child.kind == ANY_OF:
                for alt in child.children:
                    add(alt, False)
            else:
                add(child, True)
        if enum_values:
            both = [k for k in sorted(enum_values) if enum_values[k] == len(node.children)]
            if both:
                return self.add_rule(rule_name, "(" + " | ".join(both) + ")")
        return self.add_rule(rule_name, self.build_object_rule(properties, required, name, None))

    def visit(self, node: Node, name: str) -> str:
        rule_name = name + "-" if name in RESERVED_NAMES else (name or "root")
        sub_name = name + ("-" if name else "")
        k = node.kind
        if k == REF:
            return self.add_rule(rule_name, self.resolve_ref(node))
        if k == ANY_OF:
            return self.add_rule(rule_name, self.generate_union_rule(name, node.children))
        if k == ALL_OF:
            return self.visit_all_of(node, name, rule_name)
        if k == CONST:
            return self.add_rule(rule_name, format_literal(json_dump(node.value)))
        if k == ENUM:
            return self.add_rule(rule_name, "(" + " | ".join(format_literal(json_dump(v)) for v in node.values) + ")")
        if k == OBJECT:
            if not node.properties and node.additional is not None and node.additional.kind == ANY:
                return self.add_rule(rule_name, self.add_primitive("object", PRIMITIVE_RULES["object"]))
            props = [(n, s) for n, s, _ in node.properties]
            required = {n for n, _, r in node.properties if r}
            return self.add_rule(rule_name, self.build_object_rule(props, required, name, node.additional))
        if k == TUPLE:
            parts = [self.visit(it, f"{sub_name}tuple-{i}") for i, it in enumerate(node.children)]
            return self.add_rule(rule_name, '"[" space ' + ' "," space '.join(parts) + ' space "]"')
        if k == ARRAY:
            if node.items.kind == ANY and node.min_items == 0 and node.max_items < 0:
                return self.visit_primitive(rule_name, "array")
            item = self.visit(node.items, sub_name + "item")
            max_items = INT_MAX if node.max_items < 0 else node.max_items
            return self.add_rule(rule_name, '"[" space ' + build_repetition(item, node.min_items, max_items, '"," space')
                                 + ' space "]"')
        if k == STRING:
            if node.pattern:
                return self.visit_pattern(node.pattern, rule_name)
            if node.format == FORMAT_UUID:
                return self.visit_primitive(rule_name, "uuid")
            if node.format != FORMAT_NONE:
                prim = {FORMAT_DATE: "date", FORMAT_TIME: "time"}.get(node.format, "date-time") + "-string"
                return self.add_rule(rule_name, self.add_primitive(prim, STRING_FORMAT_RULES[prim]))
            if node.min_length > 0 or node.max_length >= 0:
                char_rule = self.add_primitive("char", PRIMITIVE_RULES["char"])
                max_len = INT_MAX if node.max_length < 0 else node.max_length
                return self.add_rule(rule_name, '"\\"" ' + build_repetition(char_rule, node.min_length, max_len) + ' "\\""')
            return self.visit_primitive(rule_name, "string")
        if k == INTEGER:
            if node.minimum == INT64_MIN and node.maximum == INT64_MAX:
                return self.visit_primitive(rule_name, "integer")
            out = ["("]
            build_min_max_int(node.minimum, node.maximum, out)
            out.append(")")
            return self.add_rule(rule_name, "".join(out))
        if k in (NUMBER, BOOLEAN, NULL):
            return self.visit_primitive(rule_name, k)
        return self.add_rule(rule_name, self.add_primitive("value", PRIMITIVE_RULES["value"]))  # ANY

    def format_grammar(self) -> str:
        return "".join(f"{k} ::= {v}\n" for k, v in sorted(self.rules.items()))


def json_schema_to_grammar(schema, warn=None) -> str:
    """json_schema_to_grammar(schema) for a parsed JSON value. Conversion errors raise
    LlamacliError in one line; warnings (unsupported patterns) go to `warn` if given."""
    try:
        root = _Builder(schema).build_document()
    except SchemaError as e:
        raise SchemaError(f"JSON schema conversion failed: {e}") from None
    except RecursionError:
        raise SchemaError("JSON schema conversion failed: the schema nests too deeply") from None
    conv = SchemaConverter(dotall=False)
    conv.visit(root, "")
    if conv.errors:
        raise SchemaError("JSON schema conversion failed: " + "; ".join(conv.errors))
    if conv.warnings and warn is not None:
        warn("JSON schema conversion was incomplete: " + "; ".join(conv.warnings))
    return conv.format_grammar()


def schema_text_to_grammar(text: str, warn=None) -> str:
    """The grammar for a JSON schema given as text (-j, --json-schema-file)."""
    try:
        schema = json.loads(text)
    except json.JSONDecodeError as e:
        raise SchemaError(f"the JSON schema is not valid JSON: {e}") from None
    if warn is None:
        import sys

        def warn(msg: str) -> None:
            print(f"llamacli: warning: {msg}", file=sys.stderr)
    return json_schema_to_grammar(schema, warn)
