"""Request bodies in, response bodies out: llama-server's JSON field names and shapes
(tools/server/server-common.cpp's oaicompat_chat_params_parse, server-task.cpp's to_json_*).

Every field is checked for its type and range; anything wrong is an ApiError, which the
app turns into an OpenAI-style error body: {"error": {"code", "message", "type"}}.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from dataclasses import dataclass, replace

from ..errors import LlamacliError
from ..sampling import DEFAULT_SEED, SamplerParams
from .engine import Result, TaskParams, Token

BUILD_INFO = "llamacli"  # system_fingerprint and /props build_info
MAX_STOP_WORDS = 16
MAX_TOP_LOGPROBS = 20  # OpenAI's cap
SAMPLERS = ["penalties", "top_k", "typ_p", "top_p", "min_p", "temperature"]  # our fixed chain


class ApiError(Exception):
    """An HTTP error with llama-server's error type (format_error_response)."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", **extra):
        super().__init__(message)
        self.status, self.message, self.kind, self.extra = status, message, kind, extra

    def body(self) -> dict:
        return {"error": {"code": self.status, "message": self.message, "type": self.kind, **self.extra}}


def not_found(what: str) -> ApiError:
    return ApiError(404, what, "not_found_error")


# -- fields ---------------------------------------------------------------------------------

_JSON_NAMES = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "an array",
               dict: "an object", type(None): "null"}


def _kind_of(v) -> str:
    return _JSON_NAMES.get(type(v), type(v).__name__)


def field(body: dict, name: str, kind: str, default=None):
    """body[name] checked to be of `kind` ("number", "int", "bool", "str", "array", "object");
    absent or null gives the default."""
    v = body.get(name)
    if v is None:
        return default
    ok = {
        "number": isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v),
        "int": isinstance(v, int) and not isinstance(v, bool),
        "bool": isinstance(v, bool),
        "str": isinstance(v, str),
        "array": isinstance(v, list),
        "object": isinstance(v, dict),
    }[kind]
    if not ok:
        want = {"number": "a number", "int": "an integer", "bool": "a boolean", "str": "a string",
                "array": "an array", "object": "an object"}[kind]
        raise ApiError(400, f"'{name}' must be {want}, got {_kind_of(v)}")
    return v


def in_range(name: str, v, lo, hi):
    if not lo <= v <= hi:
        raise ApiError(400, f"'{name}' must be between {lo} and {hi}, got {v}")
    return v


def _no_constant(name: str):
    raise ValueError(f"{name} is not JSON")  # Python's json reads NaN and Infinity; JSON has neither


def parse_body(raw: bytes) -> dict:
    try:
        body = json.loads(raw, parse_constant=_no_constant)
    except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError is a ValueError
        raise ApiError(400, f"the request body is not valid JSON: {e}") from None
    except RecursionError:
        raise ApiError(400, "the request body nests too deeply") from None
    if not isinstance(body, dict):
        raise ApiError(400, f"the request body must be a JSON object, got {_kind_of(body)}")
    return body


# -- the task a request asks for ------------------------------------------------------------

@dataclass
class Request:
    """What the handlers need: the prompt tokens, the task parameters, how to answer."""
    prompt: list[int]
    params: TaskParams
    stream: bool
    include_usage: bool = False
    return_tokens: bool = False
    prompt_text: str = ""


def sampling_params(body: dict) -> SamplerParams:
    d = SamplerParams()
    seed = field(body, "seed", "int", -1)
    if seed != -1:
        in_range("seed", seed, 0, 0xFFFFFFFF)
    return SamplerParams(
        temp=float(field(body, "temperature", "number", d.temp)),
        top_k=field(body, "top_k", "int", d.top_k),
        top_p=float(field(body, "top_p", "number", d.top_p)),
        min_p=float(field(body, "min_p", "number", d.min_p)),
        typical_p=float(field(body, "typical_p", "number", d.typical_p)),
        repeat_last_n=in_range("repeat_last_n", field(body, "repeat_last_n", "int", d.repeat_last_n), -1, 1 << 20),
        repeat_penalty=float(field(body, "repeat_penalty", "number", d.repeat_penalty)),
        presence_penalty=float(in_range("presence_penalty", field(body, "presence_penalty", "number", 0.0), -2.0, 2.0)),
        frequency_penalty=float(in_range("frequency_penalty", field(body, "frequency_penalty", "number", 0.0), -2.0, 2.0)),
        min_keep=in_range("min_keep", field(body, "min_keep", "int", 0), 0, 1 << 20),
        seed=DEFAULT_SEED if seed == -1 else seed,
    )


def n_predict(body: dict, n_ctx: int) -> int:
    """max_tokens (OpenAI; max_completion_tokens, its newer name) or n_predict (llama.cpp, which
    wins, and where -1 means no limit); more than a slot's context can never be produced."""
    n = -1
    for name in ("max_tokens", "max_completion_tokens", "n_predict"):
        v = field(body, name, "int")
        if v is None:
            continue
        lo = -1 if name == "n_predict" else 0
        n = in_range(name, v, lo, n_ctx)
    return n


def stop_words(body: dict) -> tuple[str, ...]:
    v = body.get("stop")
    if v is None:
        return ()
    words = [v] if isinstance(v, str) else v
    if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
        raise ApiError(400, f"'stop' must be a string or an array of strings, got {_kind_of(v)}")
    if len(words) > MAX_STOP_WORDS:
        raise ApiError(400, f"'stop' takes at most {MAX_STOP_WORDS} strings, got {len(words)}")
    return tuple(w for w in words if w)


def grammar_of(body: dict, tokenizer):
    """response_format (json_object, json_schema), json_schema or grammar -> a CompiledGrammar,
    as oaicompat_chat_params_parse reads them; None for free text."""
    from ..grammar import compile_grammar
    from ..grammar.json_schema import json_schema_to_grammar

    schema = body.get("json_schema")
    grammar = field(body, "grammar", "str")
    if schema is not None and grammar:
        raise ApiError(400, "give 'json_schema' or 'grammar', not both")
    fmt = field(body, "response_format", "object")
    if fmt is not None:
        kind = field(fmt, "type", "str", "text")
        if kind == "json_object":
            schema = field(fmt, "schema", "object", schema if schema is not None else {})
        elif kind == "json_schema":
            wrapper = field(fmt, "json_schema", "object", {})
            schema = field(wrapper, "schema", "object", {})
        elif kind != "text":
            raise ApiError(400, f"response_format type must be one of \"text\", \"json_object\" or "
                                f"\"json_schema\", but got: {kind}")
    if schema is not None:
        if not isinstance(schema, (dict, bool)):
            raise ApiError(400, f"the JSON schema must be an object, got {_kind_of(schema)}")
        if schema == {}:
            schema = {"type": "object"}  # an absent or empty schema means any object
        try:
            grammar = json_schema_to_grammar(schema)
        except LlamacliError as e:
            raise ApiError(400, str(e)) from None
    if not grammar:
        return None
    try:
        return compile_grammar(grammar, tokenizer)
    except (LlamacliError, ValueError) as e:
        raise ApiError(400, f"grammar: {e}") from None


def messages_of(body: dict) -> list[dict]:
    msgs = body.get("messages")
    if msgs is None:
        raise ApiError(400, "'messages' is required")
    if not isinstance(msgs, list) or not msgs:
        raise ApiError(400, "'messages' must be a non-empty array")
    out = []
    for i, m in enumerate(msgs):
        if not isinstance(m, dict):
            raise ApiError(400, f"messages[{i}] must be an object, got {_kind_of(m)}")
        role = m.get("role")
        if not isinstance(role, str) or not role:
            raise ApiError(400, f"messages[{i}].role must be a non-empty string")
        content = m.get("content")
        if isinstance(content, list):  # typed parts: the text ones, joined
            texts = []
            for part in content:
                if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                    raise ApiError(400, f"messages[{i}].content: only parts of type 'text' are supported")
                texts.append(part["text"])
            content = "\n".join(texts)
        elif content is None and role == "assistant":
            content = ""
        elif not isinstance(content, str):
            raise ApiError(400, f"messages[{i}].content must be a string or an array of text parts")
        out.append({"role": role, "content": content})
    return out


def prompt_tokens(prompt, tokenizer, n_vocab: int) -> list[int]:
    """A /completion prompt: a string, or token ids and strings mixed (a BOS is added only when
    it starts with a string, as tokenize_mixed does), or a one-element array of those."""
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], (str, list)):
        prompt = prompt[0]
    if isinstance(prompt, str):
        return tokenizer.encode(prompt, add_special=True, parse_special=True)
    if not isinstance(prompt, list):
        raise ApiError(400, f"'prompt' must be a string or an array of tokens, got {_kind_of(prompt)}")
    ids: list[int] = []
    for i, p in enumerate(prompt):
        if isinstance(p, str):
            ids += tokenizer.encode(p, add_special=i == 0, parse_special=True)
        elif isinstance(p, int) and not isinstance(p, bool):
            if not 0 <= p < n_vocab:
                raise ApiError(400, f"prompt token {p} is outside the vocabulary (0..{n_vocab - 1})")
            ids.append(p)
        else:
            raise ApiError(400, "'prompt' holds one prompt per request: a string or an array of tokens and strings")
    return ids


def check_context(ids: list[int], n_ctx: int) -> None:
    if not ids:
        raise ApiError(400, "the prompt is empty")
    if len(ids) >= n_ctx:
        raise ApiError(400, f"request ({len(ids)} tokens) exceeds the available context size ({n_ctx} tokens), "
                            "try increasing it", "exceed_context_size_error", n_prompt_tokens=len(ids), n_ctx=n_ctx)


def task_params(body: dict, tokenizer, n_ctx: int, n_probs: int) -> TaskParams:
    sampling = sampling_params(body)
    if sampling.repeat_last_n == -1:  # -1: the whole context, as llama.cpp reads it
        sampling = replace(sampling, repeat_last_n=n_ctx)
    return TaskParams(sampling=sampling, n_predict=n_predict(body, n_ctx), stop=stop_words(body),
                      n_probs=n_probs, ignore_eos=field(body, "ignore_eos", "bool", False),
                      grammar=grammar_of(body, tokenizer))


def chat_logprobs(body: dict) -> int:
    """logprobs (a boolean) and top_logprobs, as the chat endpoint takes them."""
    if field(body, "logprobs", "bool", False):
        return max(1, in_range("top_logprobs", field(body, "top_logprobs", "int", MAX_TOP_LOGPROBS), 0,
                                MAX_TOP_LOGPROBS))
    if body.get("top_logprobs") is not None:
        raise ApiError(400, "top_logprobs requires logprobs to be set to true")
    return 0


def stream_options(body: dict, stream: bool) -> bool:
    opts = field(body, "stream_options", "object")
    if opts is None:
        return False
    if not stream:
        raise ApiError(400, "'stream_options' needs 'stream': true")
    return field(opts, "include_usage", "bool", False)


# -- responses ------------------------------------------------------------------------------

def usage(r: Result) -> dict:
    n = len(r.tokens)
    return {"completion_tokens": n, "prompt_tokens": r.n_prompt, "total_tokens": n + r.n_prompt,
            "prompt_tokens_details": {"cached_tokens": r.n_cached}}


class Reply:
    """One request's answer in one of three dialects: 'chat' (/v1/chat/completions), 'oai'
    (/v1/completions) and 'native' (/completion)."""

    def __init__(self, dialect: str, model: str, req: Request, settings: dict):
        self.dialect, self.model, self.req, self.settings = dialect, model, req, settings
        prefix = "chatcmpl" if dialect == "chat" else "cmpl"
        self.id = f"{prefix}-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.n_decoded = 0

    def _head(self, obj: str) -> dict:
        return {"created": self.created, "id": self.id, "model": self.model, "system_fingerprint": BUILD_INFO,
                "object": obj}

    # -- streamed pieces

    def first_chunks(self) -> list[dict]:
        if self.dialect == "chat":  # openai's clients expect the role first
            return [{"choices": [{"finish_reason": None, "index": 0, "delta": {"role": "assistant", "content": None}}],
                     **self._head("chat.completion.chunk")}]
        return []

    def token_chunks(self, t: Token) -> list[dict]:
        if t.id >= 0:
            self.n_decoded += 1
        if not t.text and t.probs is None:
            return []
        probs = [t.probs] if t.probs is not None else None
        if self.dialect == "chat":
            choice = {"finish_reason": None, "index": 0, "delta": {"content": t.text}}
            if probs:
                choice["logprobs"] = {"content": probs}
            return [{"choices": [choice], **self._head("chat.completion.chunk")}]
        if self.dialect == "oai":
            return [{"choices": [{"text": t.text, "index": 0, "logprobs": {"content": probs} if probs else None,
                                  "finish_reason": None}], **self._head("text_completion")}]
        out = {"index": 0, "content": t.text, "tokens": [t.id] if t.id >= 0 else [], "stop": False, "id_slot": -1,
               "tokens_predicted": self.n_decoded, "tokens_evaluated": len(self.req.prompt)}
        if probs:
            out["completion_probabilities"] = probs
        return [out]

    def final_chunks(self, r: Result) -> list[dict]:
        if self.dialect == "chat":
            out = [{"choices": [{"finish_reason": r.finish_reason, "index": 0, "delta": {}}],
                    **self._head("chat.completion.chunk"), "timings": r.timings()}]
            if self.req.include_usage:
                out.append({"choices": [], **self._head("chat.completion.chunk"), "usage": usage(r)})
            return out
        if self.dialect == "oai":
            out = [{"choices": [{"text": "", "index": 0, "logprobs": None, "finish_reason": r.finish_reason}],
                    **self._head("text_completion"), "timings": r.timings()}]
            if self.req.include_usage:
                out.append({"choices": [], **self._head("text_completion"), "usage": usage(r)})
            return out
        return [self.native(r, streamed=True)]

    # -- whole answers

    def complete(self, r: Result) -> dict:
        probs = {"content": r.probs} if r.probs else None
        if self.dialect == "chat":
            choice = {"finish_reason": r.finish_reason, "index": 0,
                      "message": {"role": "assistant", "content": r.content}}
            if probs:
                choice["logprobs"] = probs
            return {"choices": [choice], **self._head("chat.completion"), "usage": usage(r), "timings": r.timings()}
        if self.dialect == "oai":
            return {"choices": [{"text": r.content, "index": 0, "logprobs": probs, "finish_reason": r.finish_reason}],
                    **self._head("text_completion"), "usage": usage(r), "timings": r.timings()}
        return self.native(r, streamed=False)

    def native(self, r: Result, streamed: bool) -> dict:
        out = {"index": 0, "content": "" if streamed else r.content,
               "tokens": r.tokens if self.req.return_tokens and not streamed else [], "id_slot": r.id_slot,
               "stop": True, "model": self.model, "tokens_predicted": len(r.tokens), "tokens_evaluated": r.n_prompt,
               "generation_settings": self.settings, "prompt": self.req.prompt_text,
               "has_new_line": "\n" in r.content, "truncated": r.truncated, "stop_type": r.stop_type,
               "stopping_word": r.stopping_word, "tokens_cached": r.n_cached, "timings": r.timings()}
        if r.probs and not streamed:
            out["completion_probabilities"] = r.probs
        return out


def generation_settings(p: TaskParams, n_ctx: int, model: str, stream: bool = False) -> dict:
    """llama-server's slot params as /props and /completion show them."""
    s = p.sampling
    return {"n_ctx": n_ctx, "model": model, "seed": s.seed, "temperature": s.temp, "top_k": s.top_k, "top_p": s.top_p,
            "min_p": s.min_p, "typical_p": s.typical_p, "repeat_last_n": s.repeat_last_n,
            "repeat_penalty": s.repeat_penalty, "presence_penalty": s.presence_penalty,
            "frequency_penalty": s.frequency_penalty, "stop": list(p.stop), "max_tokens": p.n_predict,
            "n_predict": p.n_predict, "ignore_eos": p.ignore_eos, "stream": stream, "n_probs": p.n_probs,
            "min_keep": s.min_keep, "grammar": "", "samplers": SAMPLERS}
