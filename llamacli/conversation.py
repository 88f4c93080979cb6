"""Conversation mode (`run -cnv`): chat turns over one model, one KV cache and one sampler.

Each turn renders the whole conversation with the chat template and tokenizes it, as
llama-server (behind the current llama-cli) does; the tokens that match what the KV cache
already holds are kept (llama.cpp's prompt-cache reuse) and only the rest are evaluated.
After a reply the cache holds the prompt and the reply, so the next turn evaluates little
more than the new user message; /regen drops the last reply and keeps everything before it.

A full context is not shifted: a prompt that does not fit is refused with a message (the
user message is dropped, and /clear starts over), and a reply that reaches the end of the
context stops there with a message. The sampler (and its RNG, seeded by -s) lives for the
whole session, so a session with a fixed seed is reproducible and /regen draws anew.

`Session` is the core, usable from Python; `converse` is the interactive loop around it.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Callable, TextIO

from .chat_template import ChatTemplate
from .errors import LlamacliError
from .generate import Generator
from .sampling import Sampler, SamplerParams

COMMANDS_HELP = (
    "available commands:\n"
    "  /exit or Ctrl+C     stop or exit\n"
    "  /regen              regenerate the last response\n"
    "  /clear              clear the chat history\n"
)


@dataclass
class TurnStats:
    n_prompt: int = 0      # tokens of the rendered conversation
    n_reused: int = 0      # of those, already in the KV cache
    n_evaluated: int = 0   # of those, evaluated this turn
    t_prompt_s: float = 0.0
    n_generated: int = 0   # reply tokens sampled (the end-of-generation token not counted)
    n_gen_evaluated: int = 0
    t_gen_s: float = 0.0
    context_full: bool = False
    interrupted: bool = False

    def summary(self) -> str:
        """llama-cli's line after a reply."""
        pp = self.n_evaluated / self.t_prompt_s if self.t_prompt_s > 0 else 0.0
        tg = self.n_gen_evaluated / self.t_gen_s if self.t_gen_s > 0 else 0.0
        return f"[ Prompt: {pp:.1f} t/s | Generation: {tg:.1f} t/s ]"


class Session:
    def __init__(self, gen: Generator, template: ChatTemplate, params: SamplerParams,
                 system: str | None = None, n_predict: int = -1, ignore_eos: bool = False, grammar=None):
        self.gen, self.template = gen, template
        self.system, self.n_predict, self.ignore_eos = system, n_predict, ignore_eos
        # a grammar (llamacli.grammar.CompiledGrammar) constrains each reply from its start:
        # llama-server, behind llama-cli, builds a new grammar sampler for every request
        self.sampler = Sampler(params, gen.model.cfg.n_vocab, grammar=gen.grammar_state(grammar))
        self.cached: list[int] = []  # the tokens whose K/V rows the cache holds, in position order
        self.messages: list[dict] = []
        self.clear()
        # fail at the start, not on the first turn, as llama.cpp's common_chat_verify_template
        template.render(self.messages + [{"role": "user", "content": "test"}])

    def clear(self) -> None:
        """Forget the conversation (the cache stays: a new one that starts alike reuses it)."""
        self.messages = [{"role": "system", "content": self.system}] if self.system else []

    def can_regen(self) -> bool:
        return len(self.messages) >= 2 and self.messages[-1]["role"] == "assistant"

    def regen(self) -> None:
        if not self.can_regen():
            raise LlamacliError("no message to regenerate")
        self.messages.pop()

    def prompt_ids(self) -> list[int]:
        return self.gen.tokenizer.encode(self.template.render(self.messages, add_generation_prompt=True),
                                         add_special=True, parse_special=True)

    def reply(self, user: str | None = None, on_token: Callable[[int], None] | None = None) -> tuple[list[int], TurnStats]:
        """Add the user message (None: answer the conversation as it stands, for /regen) and
        generate the assistant's reply, which joins the conversation. A prompt that does not
        fit raises LlamacliError and leaves the conversation as it was."""
        if user is not None:
            self.messages.append({"role": "user", "content": user})
        try:
            ids = self.prompt_ids()
            self.gen.check_prompt(ids)
        except (LlamacliError, KeyboardInterrupt):
            if user is not None:
                self.messages.pop()
            raise
        st = TurnStats(n_prompt=len(ids))
        model = self.gen.model
        # the longest prefix the cache already holds; at least the last token is evaluated,
        # since its logits give the first pick
        keep = 0
        self.cached = self.cached[:model.state.n_past]  # an interrupted turn may have left less
        limit = min(len(self.cached), len(ids) - 1)
        while keep < limit and self.cached[keep] == ids[keep]:
            keep += 1
        model.state.truncate(keep)
        st.n_reused, st.n_evaluated = keep, len(ids) - keep
        for t in ids[keep:]:
            self.sampler.accept(t)
        if self.sampler.grammar is not None:
            self.sampler.grammar.reset()
        got: list[int] = []

        def keep_token(t: int) -> None:
            got.append(t)
            if on_token is not None:
                on_token(t)

        n_eval0 = self.gen.perf.n_eval
        t_start, t_gen = time.perf_counter(), None
        try:
            logits = self.gen.eval_prompt(ids[keep:])
            t_gen = time.perf_counter()
            self.gen.sample_loop(logits, self.n_predict, self.sampler, self.ignore_eos, keep_token)
            st.context_full = self.gen.context_full
        except KeyboardInterrupt:  # Ctrl+C ends the reply where it is; the session goes on
            st.interrupted = True
        finally:
            now = time.perf_counter()
            st.t_prompt_s = (t_gen or now) - t_start
            st.t_gen_s = now - t_gen if t_gen is not None else 0.0
            st.n_generated = len(got)
            st.n_gen_evaluated = self.gen.perf.n_eval - n_eval0
            # whatever was evaluated, in order: the cache stays consistent even after Ctrl+C
            self.cached = (ids + got)[:model.state.n_past]
            self.messages.append({"role": "assistant", "content": self.gen.tokenizer.decode(got)})
        return got, st


def _read_line(prompt: str, interactive: bool, stdin: TextIO) -> str | None:
    """One user line without its newline; None at end of input."""
    if interactive:
        try:
            return input(prompt)
        except EOFError:
            return None
    line = stdin.readline()
    if not line:
        return None
    return line[:-1] if line.endswith("\n") else line


def converse(session: Session, first: str | None = None, single_turn: bool = False,
             stdin: TextIO | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """The chat loop: read a line, answer it, repeat until /exit, end of input or Ctrl+C at the
    prompt. Replies stream to `out`; everything else (help, timings, notes) goes to `err`, so
    with piped input the standard output holds the replies alone. Returns the exit status."""
    stdin, out, err = stdin or sys.stdin, out or sys.stdout, err or sys.stderr
    interactive = stdin is sys.stdin and stdin.isatty()
    if interactive:
        try:
            import readline  # noqa: F401  line editing and history for input()
        except ImportError:
            pass
        print("\n" + COMMANDS_HELP, file=err)
    tok = session.gen.tokenizer
    pending = first
    while True:
        if pending is not None:
            line, pending = pending, None
            if interactive:
                print(f"> {line}", file=out)
        else:
            try:
                line = _read_line("> ", interactive, stdin)
            except KeyboardInterrupt:
                line = None
            if line is None:
                break
        if not line.strip():
            continue
        user: str | None = line
        if line.startswith("/exit"):
            break
        if line.startswith("/clear"):
            session.clear()
            print("Chat history cleared.", file=err)
            continue
        if line.startswith("/regen"):
            if not session.can_regen():
                print("llamacli: error: no message to regenerate", file=err)
                continue
            session.regen()
            user = None
        dec = tok.stream_decoder()

        def emit(t: int) -> None:
            text = dec.feed(t)
            if text:
                out.write(text)
                out.flush()

        try:
            _, st = session.reply(user, on_token=emit)
        except KeyboardInterrupt:  # before the reply began: the user message is dropped
            print("\n[ interrupted ]", file=err)
            continue
        except LlamacliError as e:
            print(f"llamacli: error: {e}; /clear starts a new conversation", file=err)
            if single_turn:
                return 1
            continue
        out.write(dec.flush() + "\n")
        out.flush()
        if st.interrupted:
            print("[ interrupted ]", file=err)
        if st.context_full:
            print(f"llamacli: context full ({session.gen.n_ctx} tokens): the reply stops here; "
                  "/clear starts a new conversation", file=err)
        print(st.summary(), file=err)
        if single_turn:
            break
    return 0
