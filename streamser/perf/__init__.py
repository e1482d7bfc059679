"""Performance tooling: the FLOP count of the model and the ``streamser bench`` benchmark.

Nothing here is imported by the live pipeline; it imports only torch, numpy and the model, so it
runs on a bare GPU server without the terminal UI or audio libraries.
"""
