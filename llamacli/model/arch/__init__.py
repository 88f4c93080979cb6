"""One spec per model family, as llama.cpp's src/models/<arch>.cpp. Adding a family is adding a
module here (hyper-parameters, tensors, and the graph steps it needs) and its entry below."""

from __future__ import annotations

from importlib import import_module

from ...errors import LlamacliError

# general.architecture -> module of this package
FAMILIES = {
    "llama": "llama", "qwen2": "qwen2", "qwen3": "qwen3", "gemma2": "gemma2", "gemma3": "gemma3",
    "phi3": "phi3", "olmo2": "olmo2", "granite": "granite", "smollm3": "smollm3", "mistral3": "mistral3",
    "qwen3moe": "qwen3moe", "olmoe": "olmoe", "gpt-oss": "gpt_oss",
}
SUPPORTED_ARCHS = tuple(FAMILIES)


def spec_for(arch: str, path=None):
    mod = FAMILIES.get(arch)
    if mod is None:
        where = f"{path}: " if path else ""
        raise LlamacliError(f"{where}unsupported architecture '{arch}' (supported: {', '.join(SUPPORTED_ARCHS)})")
    return import_module(f"{__name__}.{mod}").SPEC
