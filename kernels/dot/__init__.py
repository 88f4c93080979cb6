"""Dot-product kernels: activation quantizers and matrix-vector / matrix-matrix products.

``DOTS`` maps a ``GGMLQuantizationType`` to its kernel set (see ``dot/matmul.py``).
"""

from .matmul import DOTS, Activation, DotKernel  # noqa: F401
