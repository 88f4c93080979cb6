"""Tokenizers as llama.cpp implements them: byte-level BPE and SentencePiece.

    from llamacli.tokenizer import load_tokenizer
    tok = load_tokenizer(gf)                 # gf: llamacli.gguf_io.GGUFFile
    ids = tok.encode("Hello", add_special=True, parse_special=True)
    tok.decode(ids); tok.token_to_piece(ids[0]); tok.is_eog(tok.eos_id)
"""

from .stream import StreamDecoder
from .tokenizer import Tokenizer, load_tokenizer

__all__ = ["StreamDecoder", "Tokenizer", "load_tokenizer"]
