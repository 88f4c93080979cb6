"""JSON schema -> GBNF reference from llama.cpp's own converter.

The vendored llama.cpp (llama-cpp-python 0.3.36) no longer ships the Python twin
examples/json_schema_to_grammar.py, and llama-cpp-python's llama_grammar.py carries an older
copy of the algorithm (different pattern and object rules). So the reference is the C++
`json_schema_to_grammar(common_json, force_gbnf)` in the prebuilt libllama-common.so: this
script compiles a ten-line driver against the vendored headers (g++), feeds it each schema on
stdin and stores what it prints.

    python3 scripts/make_grammar_reference.py

Writes tests/golden/grammar/schemas.json: a list of {name, schema, grammar} (grammar is the
converter's text, or {"error": message} where llama.cpp refuses the schema).
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENDOR = Path("/work/peer/llama_cpp_python-0.3.36/vendor/llama.cpp")
LIBDIR = Path("/work/peer/avx2/bin")

DRIVER = r"""
#include "json-schema-to-grammar.h"
#include <iostream>
#include <sstream>
int main() {
    std::stringstream ss; ss << std::cin.rdbuf();
    try {
        std::cout << json_schema_to_grammar(common_json::parse(ss.str()));
    } catch (const std::exception & e) {
        std::cout << e.what();
        return 1;
    }
    return 0;
}
"""

S = {"type": "string"}
I = {"type": "integer"}

SCHEMAS = {
    "string": S,
    "integer": I,
    "number": {"type": "number"},
    "boolean_null": {"type": ["boolean", "null"]},
    "any": {},
    "object_any": {"type": "object"},
    "array_any": {"type": "array"},
    "object_required": {"type": "object", "properties": {"name": S, "age": I, "ok": {"type": "boolean"}},
                        "required": ["name", "age"]},
    "object_optional_only": {"type": "object", "properties": {"a": S, "b": I, "c": {"type": "number"}}},
    "object_no_additional": {"type": "object", "properties": {"x": I}, "required": ["x"], "additionalProperties": False},
    "object_additional_schema": {"type": "object", "properties": {"id": I, "also": S},
                                 "additionalProperties": {"type": "number"}},
    "object_additional_true": {"properties": {"and": S, "also": S}, "required": ["and"], "additionalProperties": True},
    "enum_mixed": {"enum": ["red", "green", 3, None, True, {"a": [1, 2.5]}]},
    "const": {"const": "fixed \"quoted\"\nline"},
    "array_items": {"type": "array", "items": I, "minItems": 2, "maxItems": 5},
    "array_min_only": {"type": "array", "items": S, "minItems": 1},
    "array_max_one": {"type": "array", "items": {"type": "boolean"}, "maxItems": 1},
    "tuple": {"type": "array", "prefixItems": [S, I, {"const": 1}]},
    "string_lengths": {"type": "object", "properties": {"a": {"type": "string", "minLength": 2, "maxLength": 8},
                                                        "b": {"type": "string", "minLength": 3},
                                                        "c": {"type": "string", "maxLength": 1}}},
    "pattern": {"type": "string", "pattern": "^[A-Z][a-z]{2,5}(-[0-9]+)?\\.x|ab*c?\"d\\$$"},
    "pattern_groups": {"type": "object", "properties": {
        "code": {"type": "string", "pattern": "^(?:[a-f0-9]{2}){3}$"},
        "dots": {"type": "string", "pattern": "^a.b.{1,3}$"},
        "unsupported": {"type": "string", "pattern": "^(?=x)y$"}}},
    "formats": {"type": "object", "properties": {"d": {"type": "string", "format": "date"},
                                                 "t": {"type": "string", "format": "time"},
                                                 "dt": {"type": "string", "format": "date-time"},
                                                 "u": {"type": "string", "format": "uuid"},
                                                 "other": {"type": "string", "format": "email"}}},
    "integer_bounds": {"type": "object", "properties": {
        "a": {"type": "integer", "minimum": 0}, "b": {"type": "integer", "minimum": 7},
        "c": {"type": "integer", "minimum": 123}, "d": {"type": "integer", "minimum": -45},
        "e": {"type": "integer", "maximum": 250}, "f": {"type": "integer", "maximum": -3},
        "g": {"type": "integer", "minimum": 15, "maximum": 1234}, "h": {"type": "integer", "minimum": -300, "maximum": 42},
        "i": {"type": "integer", "minimum": -20, "maximum": -5},
        "j": {"type": "integer", "exclusiveMinimum": 0, "exclusiveMaximum": 100},
        "k": {"type": "integer", "minimum": 1.5, "maximum": 9.5}}},
    "number_bounds": {"type": "number", "minimum": 0, "maximum": 1.5},
    "ref_local": {"type": "object", "properties": {"home": {"$ref": "#/$defs/addr"}, "work": {"$ref": "#/$defs/addr"}},
                  "$defs": {"addr": {"type": "object", "properties": {"street": S, "zip": {"type": "string", "pattern": "^[0-9]{5}$"}},
                                     "required": ["street"]}}},
    "ref_recursive": {"$ref": "#/definitions/node",
                      "definitions": {"node": {"type": "object", "properties": {"v": I, "next": {"anyOf": [{"$ref": "#/definitions/node"}, {"type": "null"}]}},
                                               "required": ["v"]}}},
    "any_of": {"anyOf": [S, I, {"type": "object", "properties": {"k": S}}]},
    "one_of": {"oneOf": [{"const": "a"}, {"type": "array", "items": {"enum": [1, 2]}}]},
    "all_of_objects": {"allOf": [{"type": "object", "properties": {"a": S}}, {"properties": {"b": I}},
                                 {"anyOf": [{"properties": {"c": {"type": "boolean"}}}]}]},
    "all_of_enums": {"allOf": [{"enum": ["x", "y", "z"]}, {"enum": ["z", "y", "w"]}]},
    "reserved_names": {"type": "object", "properties": {"root": S, "string": I, "value": {"type": "array"}, "odd name!": S},
                       "required": ["root", "string"]},
    "bad_type": {"type": "text"},
    "bad_ref": {"$ref": "http://example.com/schema"},
    "bad_pattern": {"type": "string", "pattern": "^(ab$"},
}


def compile_driver(tmp: Path) -> Path:
    src, exe = tmp / "js2g.cpp", tmp / "js2g"
    src.write_text(DRIVER)
    subprocess.run(["g++", "-std=c++17", "-O1", f"-I{VENDOR / 'common'}", f"-I{VENDOR / 'include'}",
                    f"-I{VENDOR / 'vendor'}", f"-I{VENDOR / 'ggml' / 'include'}", str(src), "-o", str(exe),
                    f"-L{LIBDIR}", "-lllama-common", f"-Wl,-rpath,{LIBDIR}"], check=True)
    return exe


def main() -> None:
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        exe = compile_driver(Path(tmp))
        for name, schema in SCHEMAS.items():
            r = subprocess.run([str(exe)], input=json.dumps(schema).encode(), capture_output=True)
            text = r.stdout.decode("utf-8")
            entry = {"name": name, "schema": schema, "grammar": text if r.returncode == 0 else {"error": text}}
            if r.stderr:
                entry["stderr"] = r.stderr.decode("utf-8")
            out.append(entry)
    dest = ROOT / "tests" / "golden" / "grammar" / "schemas.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")
    print(f"{len(out)} schemas -> {dest}")


if __name__ == "__main__":
    main()
