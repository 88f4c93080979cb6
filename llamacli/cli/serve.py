"""`llamacli serve`: an HTTP server with llama-server's API (OpenAI-compatible chat and
completions, /completion, /tokenize, /props, /metrics, ...) and a chat page at /.

-np slots are decoded together, one batched step per token; -c is shared among them, as
llama-server splits it (each slot holds c / np positions). Ctrl-C or SIGTERM ends the running
streams at their next token and exits.
"""

from __future__ import annotations

from pathlib import Path

import typer

from .run import check_flash_attn, default_threads, flash_attn_option


def command(
    model: Path = typer.Option(..., "-m", "--model", help="GGUF model file."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8080, "--port", help="Port to listen on."),
    parallel: int = typer.Option(4, "-np", "--parallel", help="Slots: requests decoded together."),
    ctx_size: int = typer.Option(4096, "-c", "--ctx-size", help="Context size, shared by the slots (0: the model's trained context, capped to fit in memory)."),
    threads: int = typer.Option(default_threads(), "-t", "--threads", help="Threads."),
    batch_size: int = typer.Option(512, "-b", "--batch-size", help="Tokens evaluated per model step, all slots together."),
    flash_attn: str = flash_attn_option(),
    api_key: str = typer.Option(None, "--api-key", help="Require this key (Authorization: Bearer KEY) on every endpoint but /health and /."),
    alias: str = typer.Option(None, "-a", "--alias", help="Model name the API reports (default: the model path)."),
    chat_template: str = typer.Option(None, "--chat-template", help="Chat template: a built-in name (chatml, gemma, llama3, phi3, zephyr) or Jinja source. Default: the model's, else chatml."),
    max_queue: int = typer.Option(64, "--max-queue", help="Requests that may wait for a slot; past that the answer is 503."),
):
    """Serve the model over HTTP: llama-server's API, with parallel slots decoded together."""
    from ..errors import LlamacliError
    from ..server.app import serve  # the engine and the HTTP stack load only when needed

    flash_attn = check_flash_attn(flash_attn)
    for name, v in (("-t", threads), ("-b", batch_size)):
        if v < 1:
            raise LlamacliError(f"{name} must be at least 1, got {v}")
    serve(model, host=host, port=port, n_parallel=parallel, n_ctx=ctx_size, n_threads=threads, n_batch=batch_size,
          api_key=api_key, alias=alias, chat_template=chat_template, max_queue=max_queue,
          flash_attn=flash_attn)
