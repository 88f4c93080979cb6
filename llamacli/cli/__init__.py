"""The `llamacli` command: one module per subcommand, each glue over one core function.

Errors the user can fix (a missing file, a bad flag value, a corrupt GGUF) end in a single
line on stderr and a non-zero exit; Ctrl-C ends with status 130.
"""

from __future__ import annotations

import importlib
import sys

import typer

try:  # typer >= 0.29 carries its own copy of click and raises its exceptions
    from typer._click.exceptions import NoArgsIsHelpError, UsageError
except ImportError:  # older typer on top of click
    from click.exceptions import NoArgsIsHelpError, UsageError

from ..errors import LlamacliError

app = typer.Typer(
    name="llamacli",
    help="Run, quantize, inspect and benchmark GGUF models on the CPU, checked against llama.cpp.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

# subcommand name -> module in this package that defines `command`
SUBCOMMANDS = {
    "run": "run",
    "tokenize": "tokenize",
    "quantize": "quantize",
    "inspect": "inspect",
    "bench": "bench",
    "perplexity": "perplexity",
    "grammar": "grammar",
    "serve": "serve",
    "imatrix": "imatrix",
    "trace": "trace",
}



@app.callback()
def _root() -> None:
    """Run, quantize, inspect and benchmark GGUF models on the CPU, checked against llama.cpp."""


for _name, _module in SUBCOMMANDS.items():
    try:
        _mod = importlib.import_module(f"{__name__}.{_module}")
    except ModuleNotFoundError as e:  # a subcommand not written yet
        if e.name != f"{__name__}.{_module}":
            raise
        continue
    app.command(_name, **getattr(_mod, "COMMAND_SETTINGS", {}))(_mod.command)


def fail(message: str, code: int = 1) -> "typer.Exit":
    """Print one line on stderr and return the exit to raise."""
    print(f"llamacli: error: {message}", file=sys.stderr)
    return typer.Exit(code)


def main(argv: list[str] | None = None) -> int:
    try:
        rv = app(args=argv, standalone_mode=False)
        if isinstance(rv, int):  # without standalone mode click returns an Exit's code
            return rv
    except NoArgsIsHelpError:
        return 0
    except UsageError as e:
        ctx = f"{e.ctx.command_path}: " if e.ctx else ""
        print(f"llamacli: error: {ctx}{e.format_message()}", file=sys.stderr)
        return 2
    except typer.Abort:
        return 130
    except typer.Exit as e:
        return e.exit_code
    except LlamacliError as e:
        print(f"llamacli: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 141
    return 0
