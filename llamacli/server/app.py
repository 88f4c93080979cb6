"""`llamacli serve`'s HTTP side: llama-server's endpoints over an ASGI app (Starlette, run by
uvicorn), in front of the engine thread.

Each generating request becomes an engine Task whose events cross from the engine thread to
the event loop through `call_soon_threadsafe`. Streams are server-sent events; a watcher on
the ASGI receive channel sees the client disconnect, while a request waits, reads its prompt
or streams, and cancels its task at once, which frees the slot. Any error is a JSON body in
OpenAI's shape; nothing below raises out to the client as a traceback.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import time
from functools import partial
from importlib import resources
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request as HttpRequest
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from ..errors import LlamacliError
from . import api
from .api import ApiError
from .engine import Busy, Engine, Task

MAX_BODY = 8 << 20  # bytes of a request body
PUBLIC = {"/", "/health", "/v1/health"}  # no API key needed (llama-server: health and the web page)


def error_response(e: ApiError) -> JSONResponse:
    return JSONResponse(e.body(), status_code=e.status)


def _sse(obj) -> bytes:
    return b"data: " + json.dumps(obj, ensure_ascii=False).encode() + b"\n\n"


def endpoint(fn):
    """Run a handler; an ApiError (or a LlamacliError from the tokenizer or the template)
    becomes its JSON error response."""
    async def wrapped(self, request):
        try:
            return await fn(self, request)
        except ApiError as e:
            return error_response(e)
        except LlamacliError as e:
            return error_response(ApiError(400, str(e)))
    wrapped.__name__ = fn.__name__
    return wrapped


class Server:
    """The endpoints, over one engine."""

    def __init__(self, engine: Engine, template, model_path: str, alias: str | None, api_key: str | None):
        self.engine, self.template = engine, template
        self.gen, self.tok = engine.gen, engine.tok
        self.model_path = str(model_path)
        self.model_id = alias or self.model_path
        # a request may name the model by its id, its path, or its file name with or without .gguf
        p = Path(self.model_path)
        self.names = {self.model_id, self.model_path, p.name, p.stem}
        self.api_key = api_key
        self.t_created = int(time.time())

    # -- plumbing ---------------------------------------------------------------------------

    def app(self) -> Starlette:
        routes = [
            Route("/", self.page, methods=["GET"]),
            Route("/health", self.health, methods=["GET"]),
            Route("/v1/health", self.health, methods=["GET"]),
            Route("/v1/models", self.models, methods=["GET"]),
            Route("/models", self.models, methods=["GET"]),
            Route("/props", self.props, methods=["GET"]),
            Route("/metrics", self.metrics, methods=["GET"]),
            Route("/tokenize", self.tokenize, methods=["POST"]),
            Route("/detokenize", self.detokenize, methods=["POST"]),
            Route("/apply-template", self.apply_template, methods=["POST"]),
            Route("/completion", self.completion, methods=["POST"]),
            Route("/completions", self.completion, methods=["POST"]),
            Route("/v1/completions", self.oai_completion, methods=["POST"]),
            Route("/chat/completions", self.chat, methods=["POST"]),
            Route("/v1/chat/completions", self.chat, methods=["POST"]),
        ]
        app = Starlette(routes=routes, exception_handlers={404: self._not_found, 405: self._bad_method,
                                                           Exception: self._internal})
        return self._guard(app)

    def _guard(self, app):
        """The API key check, before any route (llama-server's middleware_validate_api_key)."""
        key = self.api_key

        async def guarded(scope, receive, send):
            if scope["type"] == "http" and key and scope["path"] not in PUBLIC:
                headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
                given = headers.get("authorization") or headers.get("x-api-key") or ""
                if given.startswith("Bearer "):
                    given = given[len("Bearer "):]
                if given != key:
                    resp = error_response(ApiError(401, "Invalid API Key", "authentication_error"))
                    await resp(scope, receive, send)
                    return
            await app(scope, receive, send)

        return guarded

    async def _not_found(self, request, exc) -> Response:
        return error_response(api.not_found(f"no endpoint {request.method} {request.url.path}"))

    async def _bad_method(self, request, exc) -> Response:
        return error_response(ApiError(405, f"{request.method} is not allowed on {request.url.path}"))

    async def _internal(self, request, exc) -> Response:
        print(f"llamacli: error: {request.url.path}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return error_response(ApiError(500, f"internal error: {type(exc).__name__}", "server_error"))

    async def _body(self, request: HttpRequest) -> dict:
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BODY:
                raise ApiError(413, f"the request body is larger than {MAX_BODY} bytes")
            chunks.append(chunk)
        return api.parse_body(b"".join(chunks))

    def _check_model(self, body: dict) -> None:
        name = api.field(body, "model", "str")
        if name is not None and name not in self.names:
            raise ApiError(404, f"model '{name}' not found (this server runs '{self.model_id}')", "not_found_error")

    # -- small endpoints --------------------------------------------------------------------

    async def page(self, request):
        return HTMLResponse(resources.files(__package__).joinpath("chat.html").read_text(encoding="utf-8"))

    async def health(self, request):
        return JSONResponse({"status": "ok"})

    async def models(self, request):
        cfg, gf = self.gen.model.cfg, self.gen.model.gguf
        n_params = sum(int(t.n_elements) for t in gf.tensors.values())
        meta = {"vocab_type": 2 if self.tok.kind == "bpe" else 1, "n_vocab": cfg.n_vocab,
                "n_ctx_train": cfg.n_ctx_train, "n_embd": cfg.n_embd, "n_params": n_params,
                "size": os.path.getsize(self.model_path)}
        return JSONResponse({"object": "list", "data": [
            {"id": self.model_id, "object": "model", "created": self.t_created, "owned_by": "llamacpp", "meta": meta}]})

    async def props(self, request):
        p = api.TaskParams(sampling=api.SamplerParams())
        settings = api.generation_settings(p, self.engine.n_ctx, self.model_id, stream=True)
        return JSONResponse({
            "default_generation_settings": {"id": 0, "id_task": -1, "n_ctx": self.engine.n_ctx, "speculative": False,
                                            "is_processing": self.engine.n_processing > 0, "params": settings,
                                            "prompt": "", "next_token": {"has_next_token": True, "has_new_line": False,
                                                                         "n_remain": -1, "n_decoded": 0,
                                                                         "stopping_word": ""}},
            "total_slots": len(self.engine.slots), "model_alias": self.model_id, "model_path": self.model_path,
            "chat_template": self.template.source, "chat_template_caps": {}, "modalities": {"vision": False,
                                                                                          "audio": False},
            "bos_token": self.template.bos_token, "eos_token": self.template.eos_token,
            "build_info": api.BUILD_INFO, "is_sleeping": False})

    async def metrics(self, request):
        m, e = self.engine.metrics, self.engine
        counters = [
            ("prompt_tokens_total", "Number of prompt tokens processed, excluding cached tokens", m.n_prompt_tokens),
            ("prompt_tokens_cached_total", "Number of prompt tokens reused from the cache", m.n_prompt_cached),
            ("prompt_seconds_total", "Total time spent processing prompts", m.t_prompt_s),
            ("tokens_predicted_total", "Number of generation tokens processed", m.n_predicted),
            ("tokens_predicted_seconds_total", "Total time spent generating tokens", m.t_predict_s),
            ("n_decode_total", "Total number of model steps", m.n_decode),
            ("n_tokens_max", "Largest observed sequence length (prompt + generation)", m.n_tokens_max),
        ]
        gauges = [
            ("prompt_tokens_seconds", "Average prompt throughput in tokens/s",
             m.n_prompt_tokens / m.t_prompt_s if m.t_prompt_s > 0 else 0.0),
            ("predicted_tokens_seconds", "Average generation throughput in tokens/s",
             m.n_predicted / m.t_predict_s if m.t_predict_s > 0 else 0.0),
            ("requests_processing", "Number of requests processing", e.n_processing),
            ("requests_deferred", "Number of requests deferred", e.n_deferred),
            ("n_busy_slots_per_decode", "Average number of busy slots per model step",
             m.n_busy_slots / max(m.n_decode, 1)),
        ]
        lines = []
        for kind, items in (("counter", counters), ("gauge", gauges)):
            for name, help_, value in items:
                lines += [f"# HELP llamacpp:{name} {help_}", f"# TYPE llamacpp:{name} {kind}", f"llamacpp:{name} {value}"]
        return PlainTextResponse("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4")

    @endpoint
    async def tokenize(self, request):
        body = await self._body(request)
        content = api.field(body, "content", "str")
        if content is None:
            raise ApiError(400, "'content' is required")
        ids = self.tok.encode(content, add_special=api.field(body, "add_special", "bool", False),
                              parse_special=api.field(body, "parse_special", "bool", True))
        if not api.field(body, "with_pieces", "bool", False):
            return JSONResponse({"tokens": ids})
        out = []
        for t in ids:
            piece = self.tok.token_to_piece(t, special=True)
            try:
                text = piece.decode("utf-8")
            except UnicodeDecodeError:
                text = list(piece)
            out.append({"id": t, "piece": text})
        return JSONResponse({"tokens": out})

    @endpoint
    async def detokenize(self, request):
        body = await self._body(request)
        ids = api.field(body, "tokens", "array", [])
        n = self.tok.n_vocab
        if not all(isinstance(t, int) and not isinstance(t, bool) and 0 <= t < n for t in ids):
            raise ApiError(400, f"'tokens' must be an array of token ids in 0..{n - 1}")
        return JSONResponse({"content": self.tok.decode(ids)})

    @endpoint
    async def apply_template(self, request):
        body = await self._body(request)
        return JSONResponse({"prompt": self.template.render(api.messages_of(body), add_generation_prompt=True)})

    # -- generation -------------------------------------------------------------------------

    def _chat_request(self, body: dict) -> api.Request:
        text = self.template.render(api.messages_of(body), add_generation_prompt=True)
        ids = self.tok.encode(text, add_special=True, parse_special=True)
        stream = api.field(body, "stream", "bool", False)
        return api.Request(ids, api.task_params(body, self.tok, self.engine.n_ctx, api.chat_logprobs(body)), stream,
                           include_usage=api.stream_options(body, stream), prompt_text=text)

    def _completion_request(self, body: dict, oai: bool) -> api.Request:
        prompt = body.get("prompt")
        if prompt is None:
            raise ApiError(400, "'prompt' is required")
        ids = api.prompt_tokens(prompt, self.tok, self.tok.n_vocab)
        stream = api.field(body, "stream", "bool", False)
        if oai:  # OpenAI's completions take logprobs as the count of top tokens
            n_probs = api.in_range("logprobs", api.field(body, "logprobs", "int", 0), 0, api.MAX_TOP_LOGPROBS)
        else:
            n_probs = api.in_range("n_probs", api.field(body, "n_probs", "int", 0), 0, api.MAX_TOP_LOGPROBS)
        return api.Request(ids, api.task_params(body, self.tok, self.engine.n_ctx, n_probs), stream,
                           include_usage=api.stream_options(body, stream) if oai else False,
                           return_tokens=api.field(body, "return_tokens", "bool", False),
                           prompt_text=prompt if isinstance(prompt, str) else self.tok.decode(ids))

    @endpoint
    async def chat(self, request):
        return await self._generate(request, self._chat_request, "chat")

    @endpoint
    async def oai_completion(self, request):
        return await self._generate(request, partial(self._completion_request, oai=True), "oai")

    @endpoint
    async def completion(self, request):
        return await self._generate(request, partial(self._completion_request, oai=False), "native")

    async def _generate(self, request: HttpRequest, build, dialect: str) -> Response:
        """Read the body, build the request (tokenizing and compiling a grammar take a while:
        off the event loop, which keeps streaming meanwhile), queue it, answer."""
        body = await self._body(request)
        self._check_model(body)
        if api.field(body, "n", "int", 1) != 1:
            raise ApiError(400, "only one choice a request is supported ('n': 1)")
        if body.get("tools"):
            raise ApiError(501, "tools are not supported", "not_supported_error")
        req = await run_in_threadpool(build, body)
        api.check_context(req.prompt, self.engine.n_ctx)
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()

        def emit(kind: str, payload) -> None:  # on the engine thread
            try:
                loop.call_soon_threadsafe(events.put_nowait, (kind, payload))
            except RuntimeError:  # the loop has closed at shutdown: nobody is listening
                pass

        task = Task(req.prompt, req.params, emit)
        try:
            self.engine.submit(task)
        except Busy as e:
            raise ApiError(503, str(e), "unavailable_error") from None
        reply = api.Reply(dialect, self.model_id,
                          req, api.generation_settings(req.params, self.engine.n_ctx, self.model_id, req.stream))
        if req.stream:
            return EventStream(self._stream(reply, events, dialect), task, self.engine)
        watcher = asyncio.ensure_future(_watch_disconnect(request.receive, task, self.engine))
        try:
            while True:
                kind, payload = await events.get()
                if kind == "done":
                    return JSONResponse(reply.complete(payload))
                if kind == "error":
                    raise _engine_error(payload)
        finally:
            watcher.cancel()
            task.cancel()  # a no-op once it is done; frees the slot if this handler was cancelled

    async def _stream(self, reply: api.Reply, events: asyncio.Queue, dialect: str):
        for chunk in reply.first_chunks():
            yield _sse(chunk)
        while True:
            kind, payload = await events.get()
            if kind == "token":
                for chunk in reply.token_chunks(payload):
                    yield _sse(chunk)
            elif kind == "done":
                for chunk in reply.final_chunks(payload):
                    yield _sse(chunk)
                break
            else:
                yield _sse(_engine_error(payload).body())
                break
        if dialect != "native":
            yield b"data: [DONE]\n\n"


# an engine error's kind -> (HTTP status, llama-server's error type); "cancelled" reaches no one
ENGINE_ERRORS = {"invalid_request": (400, "invalid_request_error"), "unavailable": (503, "unavailable_error"),
                 "cancelled": (499, "invalid_request_error")}


def _engine_error(payload) -> ApiError:
    kind, message = payload
    status, kind = ENGINE_ERRORS.get(kind, (500, "server_error"))
    return ApiError(status, message, kind)


async def _watch_disconnect(receive, task: Task, engine: Engine) -> None:
    """Wait on the ASGI receive channel (the body is read already) for the client to leave."""
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            task.cancel()
            engine.wake()
            return


class EventStream:
    """An SSE response that cancels its task as soon as the client goes away, whether or not a
    token is being sent at that moment."""

    def __init__(self, chunks, task: Task, engine: Engine):
        self.chunks, self.task, self.engine = chunks, task, engine

    async def __call__(self, scope, receive, send) -> None:
        watcher = asyncio.ensure_future(_watch_disconnect(receive, self.task, self.engine))
        try:
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"text/event-stream; charset=utf-8"),
                                    (b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no")]})
            async for chunk in self.chunks:
                if self.task.cancelled:
                    break
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:  # the connection went away mid-send
            pass
        finally:
            watcher.cancel()
            self.task.cancel()
            self.engine.wake()
            await self.chunks.aclose()


def serve(model, host: str = "127.0.0.1", port: int = 8080, n_parallel: int = 4, n_ctx: int = 4096,
          n_threads: int = 2, n_batch: int = 512, api_key: str | None = None, alias: str | None = None,
          chat_template: str | None = None, max_queue: int = 64, flash_attn: str = "auto") -> None:
    """Load the model and serve until SIGTERM / SIGINT. n_ctx is shared by the slots, as
    llama-server splits -c among -np: each slot holds n_ctx // n_parallel positions."""
    import uvicorn

    from ..chat_template import choose_template
    from ..generate import choose_context
    from ..gguf_io import open_gguf
    from .engine import load_engine

    if n_parallel < 1:
        raise LlamacliError(f"-np must be at least 1, got {n_parallel}")
    if max_queue < 0:
        raise LlamacliError(f"--max-queue must be >= 0, got {max_queue}")
    if not 0 <= port <= 65535:
        raise LlamacliError(f"--port must be between 0 and 65535, got {port}")
    gf = open_gguf(model)
    n_ctx, note = choose_context(gf, n_ctx)
    if note:
        print(f"llamacli: warning: {note}", file=sys.stderr)
    n_slot = n_ctx // n_parallel
    if n_slot < 16:
        raise LlamacliError(f"-c {n_ctx} leaves {n_slot} positions to each of {n_parallel} slots; give a larger -c")
    sock = _listen(host, port)  # bound before the model loads: a taken port is one clear error, at once
    port = sock.getsockname()[1]
    engine = load_engine(gf, n_slot, n_parallel, min(n_batch, n_slot), n_threads, max_queue, flash_attn)
    template, note = choose_template(gf, engine.tok, chat_template)
    if note:
        print(f"llamacli: warning: {note}", file=sys.stderr)
    server = Server(engine, template, str(model), alias, api_key)

    class _Uvicorn(uvicorn.Server):
        def handle_exit(self, sig, frame):  # SIGTERM / SIGINT: end the running streams, then exit
            engine.drain()
            super().handle_exit(sig, frame)
            # uvicorn raises the signal again once it has shut down, so that the process dies of
            # it; a clean shutdown exits with status 0 instead, as the other subcommands do
            getattr(self, "_captured_signals", []).clear()

    config = uvicorn.Config(server.app(), host=host, port=port, log_level="warning", access_log=False,
                            timeout_graceful_shutdown=10, lifespan="off")
    uv = _Uvicorn(config)
    engine.start()
    print(f"llamacli: serving {model} on http://{host}:{port} ({n_parallel} slots of {n_slot} tokens)",
          file=sys.stderr, flush=True)
    try:
        uv.run(sockets=[sock])
    finally:
        engine.stop()
        sock.close()


def _listen(host: str, port: int) -> socket.socket:
    try:
        info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(info[0], socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(info[4])
        sock.listen(128)
    except OSError as e:
        raise LlamacliError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    sock.set_inheritable(True)
    return sock
