"""Golden data for conversation mode, from llama.cpp through llama-cpp-python (the peer).

Run with the peer's interpreter, never with llamacli's (llamacli must not import llama_cpp):

    /work/peer-venv/bin/python scripts/make_chat_reference.py

Writes tests/golden/chat.json:
  conversations   the message lists every rendering below uses
  builtin         {name: [[render add_ass=True, render add_ass=False], ...]} from llama.cpp's own
                  llama_chat_apply_template(name, ...) (src/llama-chat.cpp), one per conversation
  gguf/<model>    the GGUF's tokenizer.chat_template rendered by llama-cpp-python's
                  Jinja2ChatFormatter (jinja2 sandbox, trim_blocks and lstrip_blocks, as
                  Transformers renders it), with the leading BOS text removed when the vocab adds
                  a BOS (common_chat_template_direct_apply does that), and the token ids of that
                  text with add_special and parse_special on; absent when the GGUF has no template
  replies/<model> two-turn greedy sessions: each turn the whole conversation is rendered with the
                  template named there, tokenized, fed one token per llama_decode (flash attention
                  off, the decode path llamacli reproduces bit for bit), then argmax tokens until an
                  end-of-generation token or N_REPLY tokens; the reply text goes into the next
                  turn's conversation as the assistant message
"""

from __future__ import annotations

import ctypes
import json
from pathlib import Path

import llama_cpp as L
import numpy as np
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path.home() / ".cache" / "llamacli"
MODELS = {"smollm2": CACHE / "SmolLM2-135M-Instruct.Q4_1.gguf", "gemma3": CACHE / "gemma-3-270m-q4_k_m.gguf"}
BUILTINS = ["chatml", "gemma", "llama3", "phi3", "zephyr"]
N_REPLY = 40

CONVERSATIONS = [
    [{"role": "user", "content": "Hello"}],
    [{"role": "system", "content": "You are a helpful assistant."},
     {"role": "user", "content": "What is 2+2?"}],
    [{"role": "system", "content": "  Answer briefly.\n"},
     {"role": "user", "content": "Name a colour."},
     {"role": "assistant", "content": "Blue."},
     {"role": "user", "content": " And another one?  "}],
    [{"role": "user", "content": "Ünïcödé 日本語\nline two\ttab"},
     {"role": "assistant", "content": "I see two lines.\n"}],
    [{"role": "user", "content": "What does <|im_end|> mean? And <end_of_turn>?"}],
]
SESSIONS = {
    "smollm2": {"template": "gguf", "system": None, "turns": ["What is the capital of France?", "And of Italy?"]},
    "gemma3": {"template": "gemma", "system": "Answer in one sentence.",
               "turns": ["What is the capital of France?", "And of Italy?"]},
}


def builtin_render(name: str, messages: list[dict], add_ass: bool) -> str:
    keep = [(m["role"].encode(), m["content"].encode()) for m in messages]
    chat = (L.llama_chat_message * len(keep))(*[L.llama_chat_message(r, c) for r, c in keep])
    n = L.llama_chat_apply_template(name.encode(), chat, len(keep), add_ass, None, 0)
    assert n >= 0, (name, n)
    buf = ctypes.create_string_buffer(n + 1)
    n = L.llama_chat_apply_template(name.encode(), chat, len(keep), add_ass, buf, n + 1)
    return buf.raw[:n].decode("utf-8")


def piece(vocab, tid: int) -> str:
    buf = ctypes.create_string_buffer(256)
    n = L.llama_token_to_piece(vocab, tid, buf, len(buf), 0, True)
    return buf.raw[:n].decode("utf-8")


class Peer:
    def __init__(self, path: Path):
        self.model = L.llama_model_load_from_file(str(path).encode(), L.llama_model_default_params())
        self.vocab = L.llama_model_get_vocab(self.model)
        self.n_vocab = L.llama_vocab_n_tokens(self.vocab)
        tmpl = L.llama_model_chat_template(self.model, None)
        self.template = tmpl.decode() if tmpl else None
        self.add_bos = bool(L.llama_vocab_get_add_bos(self.vocab))
        self.bos = piece(self.vocab, L.llama_vocab_bos(self.vocab))
        self.eos = piece(self.vocab, L.llama_vocab_eos(self.vocab))

    def render_gguf(self, messages: list[dict], add_ass: bool) -> str:
        fmt = Jinja2ChatFormatter(self.template, eos_token=self.eos, bos_token=self.bos, add_generation_prompt=add_ass)
        text = fmt(messages=messages).prompt
        if self.add_bos and text.startswith(self.bos):
            text = text[len(self.bos):]
        return text

    def tokenize(self, text: str) -> list[int]:
        raw = text.encode("utf-8")
        buf = (L.llama_token * (len(raw) + 8))()
        n = L.llama_tokenize(self.vocab, raw, len(raw), buf, len(buf), True, True)
        assert n >= 0
        return list(buf[:n])

    def detokenize(self, ids: list[int]) -> str:
        arr = (L.llama_token * max(1, len(ids)))(*ids)
        buf = ctypes.create_string_buffer(64 + 64 * len(ids))
        n = L.llama_detokenize(self.vocab, arr, len(ids), buf, len(buf), False, False)
        return buf.raw[:n].decode("utf-8", errors="replace")

    def greedy(self, prompt: list[int]) -> list[int]:
        cp = L.llama_context_default_params()
        cp.n_ctx = cp.n_batch = cp.n_ubatch = 512
        cp.n_threads = cp.n_threads_batch = 2
        cp.flash_attn_type = L.LLAMA_FLASH_ATTN_TYPE_DISABLED
        ctx = L.llama_init_from_model(self.model, cp)
        for t in prompt:
            assert L.llama_decode(ctx, L.llama_batch_get_one((L.llama_token * 1)(t), 1)) == 0
        out = []
        while len(out) < N_REPLY:
            t = int(np.ctypeslib.as_array(L.llama_get_logits_ith(ctx, -1), shape=(self.n_vocab,)).argmax())
            if L.llama_vocab_is_eog(self.vocab, t):
                break
            out.append(t)
            assert L.llama_decode(ctx, L.llama_batch_get_one((L.llama_token * 1)(t), 1)) == 0
        L.llama_free(ctx)
        return out


def main() -> None:
    L.llama_backend_init()
    golden = {"conversations": CONVERSATIONS, "n_reply": N_REPLY, "builtin": {}, "gguf": {}, "replies": {}}
    for name in BUILTINS:
        golden["builtin"][name] = [[builtin_render(name, c, True), builtin_render(name, c, False)]
                                   for c in CONVERSATIONS]
    for model, path in MODELS.items():
        peer = Peer(path)
        if peer.template is not None:
            renders = [peer.render_gguf(c, True) for c in CONVERSATIONS]
            golden["gguf"][model] = {"renders": renders, "ids": [peer.tokenize(t) for t in renders]}
        spec = SESSIONS[model]
        messages = [{"role": "system", "content": spec["system"]}] if spec["system"] else []
        turns = []
        for user in spec["turns"]:
            messages.append({"role": "user", "content": user})
            text = (peer.render_gguf(messages, True) if spec["template"] == "gguf"
                    else builtin_render(spec["template"], messages, True))
            prompt = peer.tokenize(text)
            reply = peer.greedy(prompt)
            reply_text = peer.detokenize(reply)
            turns.append({"user": user, "prompt_ids": prompt, "reply_ids": reply, "reply": reply_text})
            messages.append({"role": "assistant", "content": reply_text})
        golden["replies"][model] = {**spec, "turns": turns}
    out = ROOT / "tests" / "golden" / "chat.json"
    out.write_text(json.dumps(golden, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
