"""`llamacli serve`: llama-server's HTTP API over parallel slots decoded together.

engine.py owns the model and its slots (one batched step per token across every active
sequence); api.py reads request bodies and writes response bodies in llama-server's JSON
shapes; app.py is the ASGI app and `serve`, the core function the CLI calls; chat.html is
the page served at /.
"""
