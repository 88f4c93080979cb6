"""llamacli: run, quantize, inspect and benchmark GGUF models on the CPU, checked against llama.cpp."""

__version__ = "0.1.0"
