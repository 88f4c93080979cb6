"""GBNF parser and matcher reference from llama.cpp's own grammar code (libllama.so).

libllama exports the grammar internals its tests use (llama_grammar_parser, llama_grammar_init_impl,
llama_grammar_accept_str, llama_grammar_get_stacks, llama_grammar_reject_candidates_for_stack).
This script compiles a small driver against the vendored headers (g++) that, for one grammar:

- prints the parse: every symbol id and every rule's elements (llama_grammar_parser::parse),
  or the parser's error line (stderr) and "FAIL";
- says whether llama_grammar_init_impl accepts it (root present, no left recursion);
- for each test line "<prefix hex> <candidate hex>...": accepts the prefix bytes
  (llama_grammar_accept_str), then reports whether a stack is empty (the grammar may end) and,
  for each candidate piece, whether llama_grammar_reject_candidates would keep it (the loop of
  the static llama_grammar_reject_candidates, over decode_utf8 of the piece from the grammar's
  partial UTF-8 state; decode_utf8 is static in llama-grammar.cpp, so the driver carries a copy).

Test strings: walks of each grammar (random picks among the characters the grammar allows,
found with a small alphabet), with random cuts and mutations, and candidate pieces made of
whole and partial UTF-8 characters. Run with python3 (the walk uses llamacli's own matcher
only to find interesting strings; every verdict stored is llama.cpp's):

    .venv/bin/python scripts/make_grammar_matcher_reference.py

Writes tests/golden/grammar/matcher.json.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
VENDOR = Path("/work/peer/llama_cpp_python-0.3.36/vendor/llama.cpp")
LIBDIR = Path("/work/peer/avx2/bin")

DRIVER = r"""
#include "llama-grammar.h"
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <string>

// decode_utf8 of src/llama-grammar.cpp (static there), unchanged
static std::pair<std::vector<uint32_t>, llama_partial_utf8> decode_utf8(
        const std::string & src, llama_partial_utf8 partial_start) {
    static const int      lookup[] = { 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 2, 2, 3, 4 };
    const char          * pos      = src.c_str();
    std::vector<uint32_t> code_points;
    code_points.reserve(src.size() + 1);
    uint32_t value    = partial_start.value;
    int      n_remain = partial_start.n_remain;
    while (*pos != 0 && n_remain > 0) {
        uint8_t next_byte = static_cast<uint8_t>(*pos);
        if ((next_byte >> 6) != 2) {
            code_points.push_back(0);
            return std::make_pair(std::move(code_points), llama_partial_utf8{ 0, -1 });
        }
        value = (value << 6) + (next_byte & 0x3F);
        ++pos;
        --n_remain;
    }
    if (partial_start.n_remain > 0 && n_remain == 0) {
        code_points.push_back(value);
    }
    while (*pos != 0) {
        uint8_t first_byte = static_cast<uint8_t>(*pos);
        uint8_t highbits   = first_byte >> 4;
        n_remain   = lookup[highbits] - 1;
        if (n_remain < 0) {
            code_points.clear();
            code_points.push_back(0);
            return std::make_pair(std::move(code_points), llama_partial_utf8{ 0, n_remain });
        }
        uint8_t mask  = (1 << (7 - n_remain)) - 1;
        value = first_byte & mask;
        ++pos;
        while (*pos != 0 && n_remain > 0) {
            value = (value << 6) + (static_cast<uint8_t>(*pos) & 0x3F);
            ++pos;
            --n_remain;
        }
        if (n_remain == 0) {
            code_points.push_back(value);
        }
    }
    code_points.push_back(0);
    return std::make_pair(std::move(code_points), llama_partial_utf8{ value, n_remain });
}

static std::string unhex(const std::string & h) {
    std::string out;
    for (size_t i = 0; i + 1 < h.size(); i += 2) out += (char) std::stoi(h.substr(i, 2), nullptr, 16);
    return out;
}

int main(int argc, char ** argv) {
    std::ifstream f(argv[1]);
    std::stringstream ss; ss << f.rdbuf();
    std::string src = ss.str();
    llama_grammar_parser parser;
    if (!parser.parse(src.c_str())) { printf("FAIL\n"); return 0; }
    for (auto & kv : parser.symbol_ids) printf("S %u %s\n", kv.second, kv.first.c_str());
    for (size_t i = 0; i < parser.rules.size(); i++) {
        printf("R %zu", i);
        for (auto & e : parser.rules[i]) printf(" %d:%u", (int) e.type, e.value);
        printf("\n");
    }
    llama_grammar * g0 = llama_grammar_init_impl(nullptr, src.c_str(), "root", false, nullptr, 0, nullptr, 0);
    printf("INIT %d\n", g0 != nullptr);
    if (!g0) return 0;
    std::string line;
    while (std::getline(std::cin, line)) {
        std::istringstream ls(line);
        std::string prefix_hex; ls >> prefix_hex;
        llama_grammar * g = llama_grammar_clone_impl(*g0);
        bool dead = false;
        try { llama_grammar_accept_str(*g, unhex(prefix_hex == "-" ? "" : prefix_hex)); } catch (const std::exception &) { dead = true; }
        if (dead) { printf("T dead\n"); llama_grammar_free_impl(g); continue; }
        auto & stacks = llama_grammar_get_stacks(g);
        bool can_end = false;
        for (auto & s : stacks) if (s.empty()) can_end = true;
        std::string flags;
        std::string cand_hex;
        while (ls >> cand_hex) {
            auto decoded = decode_utf8(unhex(cand_hex), g->partial_utf8);
            llama_grammar_candidates cands = { { 0, decoded.first.data(), decoded.second, 0 } };
            auto rejects = llama_grammar_reject_candidates_for_stack(g->rules, stacks.front(), cands);
            for (size_t i = 1; i < stacks.size(); i++) rejects = llama_grammar_reject_candidates_for_stack(g->rules, stacks[i], rejects);
            flags += rejects.empty() ? '1' : '0';
        }
        printf("T %d %s\n", (int) can_end, flags.c_str());
        llama_grammar_free_impl(g);
    }
    return 0;
}
"""

GRAMMAR_DIR = VENDOR / "grammars"

EXTRA = {  # small grammars for the corners: repetition forms, classes, escapes, unicode
    "repeats": 'root ::= "a"{2} "b"{1,3} "c"{2,} ("d" | "e")? [0-9]* [x-z]+\n',
    "classes": 'root ::= [^a-c\\n] [\\x41-\\x43\\u00e9] [\\]\\[\\-] . "\\t\\\\\\"" [ä-ü€]{1,2} ws\nws ::= [ \\t\\n]*\n',
    "nested": 'root ::= item ("," item){0,3}\nitem ::= "[" (item | [a-z]{1,2})? "]" | num\nnum ::= "-"? [1-9] [0-9]{0,2}\n',
    "empty_alt": 'root ::= ("x" | ) "y"? | "z" root2\nroot2 ::= | "w"\n',
    "unicode": 'root ::= ("日本" | "語" [ぁ-ゖ]+ | "😀"){1,3} "!"\n',
}
BAD = {
    "missing_assign": "root = \"a\"\n",
    "undefined_rule": 'root ::= foo\n',
    "unclosed_group": 'root ::= ("a" | "b"\n',
    "unclosed_string": 'root ::= "abc\n',
    "bad_escape": 'root ::= "\\q"\n',
    "bad_hex": 'root ::= [\\x4]\n',
    "dangling_repeat": 'root ::= * "a"\n',
    "no_name": 'root ::= "a"\n::= "b"\n',
    "trailing_junk": 'root ::= "a" )\n',
    "no_root": 'start ::= "a"\n',
    "left_recursion": 'root ::= expr\nexpr ::= expr "+" term | term\nterm ::= [0-9]\n',
    "left_recursion_via_empty": 'root ::= a\na ::= b? a "x" | "y"\nb ::= "z"\n',
    "huge_repeat": 'root ::= "a"{3000}\n',
    "brace_no_int": 'root ::= "a"{,3}\n',
}

ALPHABET = list("abcdefghijklmnopqrstuvwxyzABCXYZ0123456789 \t\n\"'\\[](){}<>,.:;-+*/=!?#_|éäü€日本語ぁゖ😀")


def compile_driver(tmp: Path) -> Path:
    src, exe = tmp / "gref.cpp", tmp / "gref"
    src.write_text(DRIVER)
    subprocess.run(["g++", "-std=c++17", "-O1", f"-I{VENDOR / 'src'}", f"-I{VENDOR / 'include'}",
                    f"-I{VENDOR / 'ggml' / 'include'}", str(src), "-o", str(exe),
                    f"-L{LIBDIR}", "-lllama", f"-Wl,-rpath,{LIBDIR}"], check=True)
    return exe


def walks(text: str, rng: random.Random, n: int) -> list[str]:
    """Strings the grammar accepts (or almost): random walks over ALPHABET with llamacli's matcher."""
    from llamacli.grammar import compile_grammar
    g = compile_grammar(text)
    out = []
    for _ in range(n):
        sid = g.intern(g.initial_stacks())
        s = ""
        for _ in range(rng.randint(0, 14)):
            ok = [c for c in ALPHABET if g.stacks_of(g.step(sid, ord(c)))]
            if not ok:
                break
            c = rng.choice(ok)
            s += c
            sid = g.step(sid, ord(c))
        out.append(s)
    return out


def candidates(rng: random.Random, base: str) -> list[bytes]:
    """Pieces to check after a prefix: what comes next in a walk, random text, split UTF-8."""
    out = []
    for _ in range(12):
        kind = rng.random()
        if kind < 0.4 and base:
            i = rng.randrange(len(base))
            piece = base[i:i + rng.randint(1, 4)].encode()
        elif kind < 0.7:
            piece = "".join(rng.choice(ALPHABET) for _ in range(rng.randint(1, 3))).encode()
        else:
            full = rng.choice("éä€日語ぁ😀").encode()
            cut = rng.randint(1, len(full))
            piece = (full[:cut] if rng.random() < 0.5 else full[cut:] or full)
            if rng.random() < 0.3:
                piece = rng.choice(ALPHABET).encode() + piece
        out.append(piece)
    return out


def _compact(result: dict) -> str:
    """JSON with one rule or one test a line."""
    def dump(v):
        return json.dumps(v, ensure_ascii=False, separators=(",", ":"))
    lines = ['{"grammars": {']
    gs = list(result["grammars"].items())
    for gi, (name, g) in enumerate(gs):
        lines.append(f' {dump(name)}: {{"text": {dump(g["text"])}, "symbols": {dump(g["symbols"])},')
        lines.append('  "rules": [' + ",\n   ".join(dump(r) for r in g["rules"]) + "],")
        lines.append('  "tests": [' + ",\n   ".join(dump(t) for t in g["tests"]) + "]}" + ("," if gi < len(gs) - 1 else ""))
    lines.append('}, "bad": {')
    bs = list(result["bad"].items())
    lines.append(",\n".join(f" {dump(k)}: {dump(v)}" for k, v in bs))
    lines.append("}}")
    return "\n".join(lines)


def main() -> None:
    rng = random.Random(1234)
    grammars = {p.stem: p.read_text() for p in sorted(GRAMMAR_DIR.glob("*.gbnf"))}
    grammars.update(EXTRA)
    result = {"grammars": {}, "bad": {}}
    with tempfile.TemporaryDirectory() as tmp:
        exe = compile_driver(Path(tmp))
        gfile = Path(tmp) / "g.gbnf"

        def run(text: str, lines: list[str]) -> tuple[str, str]:
            gfile.write_text(text)
            r = subprocess.run([str(exe), str(gfile)], input="\n".join(lines).encode(), capture_output=True, check=True)
            return r.stdout.decode(), r.stderr.decode()

        for name, text in grammars.items():
            tests = []
            for w in walks(text, rng, 25):
                cut = rng.randint(0, len(w))
                prefix = w[:cut]
                if rng.random() < 0.2 and prefix:  # a mutation, often fatal
                    j = rng.randrange(len(prefix))
                    prefix = prefix[:j] + rng.choice(ALPHABET) + prefix[j + 1:]
                pb = prefix.encode()
                if rng.random() < 0.15 and pb and pb[-1] >= 0x80:
                    pb = pb[:-1]  # end the prefix inside a character
                tests.append((pb, candidates(rng, w[cut:])))
            lines = [(t[0].hex() or "-") + " " + " ".join(c.hex() for c in t[1]) for t in tests]
            out, _ = run(text, lines)
            symbols, rules, verdicts, init = {}, [], [], None
            for line in out.splitlines():
                parts = line.split(" ")
                if parts[0] == "S":
                    symbols[parts[2]] = int(parts[1])
                elif parts[0] == "R":
                    rules.append([[int(x) for x in e.split(":")] for e in parts[2:]])
                elif parts[0] == "INIT":
                    init = parts[1] == "1"
                elif parts[0] == "T":
                    verdicts.append(None if parts[1] == "dead" else {"can_end": parts[1] == "1",
                                                                      "allowed": [c == "1" for c in parts[2]] if len(parts) > 2 else []})
            assert init, name
            result["grammars"][name] = {
                "text": text, "symbols": symbols, "rules": rules,
                "tests": [{"prefix": t[0].hex(), "candidates": [c.hex() for c in t[1]], "verdict": v}
                          for t, v in zip(tests, verdicts)]}
            print(name, len(rules), "rules,", sum(v is not None for v in verdicts), "live tests", file=sys.stderr)
        for name, text in BAD.items():
            out, err = run(text, [])
            result["bad"][name] = {"text": text, "parse_ok": out.strip() != "FAIL",
                                   "init_ok": "INIT 1" in out, "stderr": err.strip().splitlines()[0] if err.strip() else ""}
    dest = ROOT / "tests" / "golden" / "grammar" / "matcher.json"
    dest.write_text(_compact(result) + "\n")
    print(f"-> {dest}", file=sys.stderr)


if __name__ == "__main__":
    main()
