"""`llamacli grammar`: print the GBNF grammar llama.cpp would build from a JSON schema.

The text is json_schema_to_grammar's (common/json-schema-to-grammar.cpp), the grammar that
`llamacli run -j` and `--json-schema-file` constrain generation with; save it, edit it and
pass it back with --grammar-file.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from ..errors import LlamacliError

COMMAND_SETTINGS = {"help": "Print the GBNF grammar of a JSON schema, as llama.cpp converts it."}


def command(
    json_schema: Path = typer.Option(None, "--json-schema", help="JSON schema file ('-': standard input)."),
):
    """Convert a JSON schema to a GBNF grammar and print it."""
    from ..grammar.json_schema import schema_text_to_grammar  # loads only when it is needed

    if json_schema is None:
        raise LlamacliError("give --json-schema FILE (or - for standard input)")
    if str(json_schema) == "-":
        text = sys.stdin.read()
    else:
        try:
            text = json_schema.read_text(encoding="utf-8")
        except OSError as e:
            raise LlamacliError(f"{json_schema}: cannot read the JSON schema file ({e.strerror})") from None
        except UnicodeDecodeError:
            raise LlamacliError(f"{json_schema}: the JSON schema file is not UTF-8 text") from None
    sys.stdout.write(schema_text_to_grammar(text))
