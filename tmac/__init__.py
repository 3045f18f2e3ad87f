"""tmac: low-bit LLM weights multiplied on CPUs by table lookup (T-MAC) instead of multiplication.

    qw = tmac.quantize(w, bits=2, group_size=128, scheme="asym")
    y = tmac.matmul(qw, x)
    tmac.save("w.safetensors", qw)      # at its packed size (docs/golden-format.md)
    qw = tmac.load("w.safetensors")

``tmac.reference`` is the readable numpy specification every kernel is tested against.
Importing tmac compiles nothing; kernels compile (or load from cache) on first use.
"""

from tmac import reference
from tmac.api import dequant_matmul, matmul, quantize
from tmac.explain import explain
from tmac.formats import QuantizedWeight
from tmac.weightfile import load, save

from tmac.version import __version__

__all__ = ["QuantizedWeight", "dequant_matmul", "explain", "load", "matmul", "quantize",
           "reference", "save", "__version__"]
