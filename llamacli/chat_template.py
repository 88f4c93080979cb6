"""Chat templates: a conversation (a list of {role, content} messages) -> the prompt text.

A template is untrusted input that comes with the model file, so it is rendered by jinja2's
ImmutableSandboxedEnvironment: attribute access to Python internals (`__class__`,
`__globals__`, ...) and mutating methods are refused, `range` is capped, and the operators
that can grow a string (`+`, `*`, `**`) are capped too. Any template failure is one
LlamacliError naming the cause; no template code can run outside the sandbox.

The environment is the one Transformers (and llama-cpp-python's Jinja2ChatFormatter) use:
trim_blocks, lstrip_blocks, the loopcontrols extension, `raise_exception`, `strftime_now`
and a `tojson` that keeps non-ASCII text. After rendering, llama.cpp's
common_chat_template_direct_apply removes a leading BOS text when the vocabulary adds a BOS
itself (and a trailing EOS when it adds an EOS), so the BOS is not doubled: so do we.

Which template: --chat-template (a built-in name below, or Jinja source), else the GGUF's
`tokenizer.chat_template`, else ChatML with a warning, as llama.cpp's common_chat_templates_init
falls back to ChatML. The built-ins are Jinja renditions of llama.cpp's C++ formatters in
src/llama-chat.cpp (llm_chat_apply_template), checked against them in tests.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

from .errors import LlamacliError

MAX_STRING = 1 << 24  # longest string a template may build (16 Mi characters)
MAX_EXPONENT = 64

# llama.cpp's CHATML_TEMPLATE_SRC (common/chat.cpp), its default when a model has no template
CHATML = (
    "{%- for message in messages -%}\n"
    "  {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' -}}\n"
    "{%- endfor -%}\n"
    "{%- if add_generation_prompt -%}\n"
    "  {{- '<|im_start|>assistant\\n' -}}\n"
    "{%- endif -%}"
)

# `ctrim` is C's isspace trim, as llama-chat.cpp's trim() (Python's strip() also eats U+00A0...)
BUILTIN = {
    "chatml": CHATML,
    # google/gemma-7b-it: no system role, so system text opens the next user turn
    "gemma": (
        "{%- set ns = namespace(system='') -%}"
        "{%- for message in messages -%}"
        "{%- if message.role == 'system' -%}{%- set ns.system = ns.system + (message.content | ctrim) -%}"
        "{%- else -%}"
        "{%- set role = 'model' if message.role == 'assistant' else message.role -%}"
        "{{- '<start_of_turn>' + role + '\\n' -}}"
        "{%- if ns.system and role != 'model' -%}{{- ns.system + '\\n\\n' -}}{%- set ns.system = '' -%}{%- endif -%}"
        "{{- (message.content | ctrim) + '<end_of_turn>\\n' -}}"
        "{%- endif -%}"
        "{%- endfor -%}"
        "{%- if add_generation_prompt -%}{{- '<start_of_turn>model\\n' -}}{%- endif -%}"
    ),
    "llama3": (
        "{%- for message in messages -%}"
        "{{- '<|start_header_id|>' + message.role + '<|end_header_id|>\\n\\n' + (message.content | ctrim) + '<|eot_id|>' -}}"
        "{%- endfor -%}"
        "{%- if add_generation_prompt -%}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}{%- endif -%}"
    ),
    "phi3": (
        "{%- for message in messages -%}"
        "{{- '<|' + message.role + '|>\\n' + message.content + '<|end|>\\n' -}}"
        "{%- endfor -%}"
        "{%- if add_generation_prompt -%}{{- '<|assistant|>\\n' -}}{%- endif -%}"
    ),
    "zephyr": (
        "{%- for message in messages -%}"
        "{{- '<|' + message.role + '|>\\n' + message.content + '<|endoftext|>\\n' -}}"
        "{%- endfor -%}"
        "{%- if add_generation_prompt -%}{{- '<|assistant|>\\n' -}}{%- endif -%}"
    ),
}

_C_SPACE = " \t\n\v\f\r"


class _Sandbox(ImmutableSandboxedEnvironment):
    """The sandbox, with string growth capped so a template cannot exhaust memory."""

    intercepted_binops = frozenset(["+", "*", "**"])

    def call_binop(self, context, operator, left, right):
        if operator == "**" and isinstance(right, (int, float)) and abs(right) > MAX_EXPONENT:
            raise SecurityError(f"exponent {right} is too large")
        if operator == "*":
            for seq, n in ((left, right), (right, left)):
                if isinstance(seq, (str, list, tuple)) and isinstance(n, int) and len(seq) * n > MAX_STRING:
                    raise SecurityError(f"result of '*' would hold {len(seq) * n} items")
        result = super().call_binop(context, operator, left, right)
        if isinstance(result, (str, list, tuple)) and len(result) > MAX_STRING:
            raise SecurityError(f"result of '{operator}' would hold {len(result)} items")
        return result


def _raise_exception(message):
    raise jinja2.TemplateError(message)


def _tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _environment() -> _Sandbox:
    env = _Sandbox(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = _tojson
    env.filters["ctrim"] = lambda s: str(s).strip(_C_SPACE)
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env


@dataclass
class ChatTemplate:
    source: str
    name: str            # a built-in name, "gguf", or "custom"
    bos_token: str = ""  # text of the BOS / EOS tokens, as templates see them
    eos_token: str = ""
    add_bos: bool = False  # the tokenizer adds these itself: strip them from the text
    add_eos: bool = False

    def __post_init__(self):
        try:
            self._tmpl = _environment().from_string(self.source)
        except jinja2.TemplateSyntaxError as e:
            raise LlamacliError(f"chat template ({self.name}): syntax error at line {e.lineno}: {e.message}") from None
        except (jinja2.TemplateError, RecursionError, MemoryError) as e:
            raise LlamacliError(f"chat template ({self.name}): {e}") from None

    def render(self, messages: list[dict], add_generation_prompt: bool = True) -> str:
        """The conversation as prompt text (common_chat_template_direct_apply)."""
        try:
            text = self._tmpl.render(messages=messages, add_generation_prompt=add_generation_prompt,
                                     bos_token=self.bos_token, eos_token=self.eos_token)
        except SecurityError as e:
            raise LlamacliError(f"chat template ({self.name}) refused by the sandbox: {e}") from None
        except (jinja2.TemplateError, TypeError, ValueError, KeyError, IndexError, AttributeError,
                ZeroDivisionError, OverflowError, RecursionError, MemoryError) as e:
            raise LlamacliError(f"chat template ({self.name}) failed: {type(e).__name__}: {e}") from None
        if self.add_bos and self.bos_token and text.startswith(self.bos_token):
            text = text[len(self.bos_token):]
        if self.add_eos and self.eos_token and text.endswith(self.eos_token):
            text = text[:-len(self.eos_token)]
        return text


def choose_template(gf, tokenizer, override: str | None = None) -> tuple[ChatTemplate, str | None]:
    """The template to use and a warning, if any. `override` is a built-in name or Jinja source."""
    v = tokenizer.vocab

    def text_of(kind: str) -> str:
        tid = v.special.get(kind, -1)
        return tokenizer.token_to_piece(tid, special=True).decode("utf-8", errors="replace") if tid >= 0 else ""

    toks = dict(bos_token=text_of("bos"), eos_token=text_of("eos"), add_bos=v.add_bos, add_eos=v.add_eos)
    if override is not None:
        if override in BUILTIN:
            return ChatTemplate(BUILTIN[override], override, **toks), None
        if "{{" not in override and "{%" not in override:
            raise LlamacliError(f"unknown chat template '{override}' (built-in: {', '.join(BUILTIN)}; "
                                "or give Jinja source, or --chat-template-file)")
        return ChatTemplate(override, "custom", **toks), None
    source = gf.get("tokenizer.chat_template")
    if isinstance(source, str) and source:
        return ChatTemplate(source, "gguf", **toks), None
    note = ("the model has no chat template; using ChatML, as llama.cpp does "
            f"(--chat-template picks another: {', '.join(BUILTIN)})")
    return ChatTemplate(CHATML, "chatml", **toks), note
