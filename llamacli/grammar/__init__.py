"""Grammar-constrained sampling, as llama.cpp: GBNF text (gbnf.py), the pushdown matcher over
token pieces (matcher.py) and JSON schema to GBNF (json_schema.py)."""

from __future__ import annotations

from .gbnf import G, Grammar, parse_grammar
from .matcher import CompiledGrammar, GrammarError, GrammarState, TokenPieces, decode_utf8


def compile_grammar(text: str, tokenizer=None) -> CompiledGrammar:
    """Parse GBNF text (root rule `root`); `<token>` references resolve through the tokenizer,
    as llama.cpp tokenizes them (no BOS, special tokens parsed)."""
    tokenize = None
    if tokenizer is not None:
        def tokenize(s: str) -> list[int]:
            return tokenizer.encode(s, add_special=False, parse_special=True)
    return CompiledGrammar(parse_grammar(text, "root", tokenize))


__all__ = ["G", "Grammar", "parse_grammar", "CompiledGrammar", "GrammarError", "GrammarState",
           "TokenPieces", "decode_utf8", "compile_grammar"]
