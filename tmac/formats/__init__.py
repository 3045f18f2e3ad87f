"""Weight formats: the format table (``FORMATS``) and the container ``QuantizedWeight``.

One small class per format, declared once (``tmac.formats.base.Format``), registered by name in
the order below; ``tmac.quantize(scheme=...)``, the ops, ``explain``, ``tmac bench``, the golden
export, the model's formats and the tests all iterate this table.

    uniform  asym, sym, ternary: w = (code - zero) * scale, integer zeros, 1-8 bits
    affine   affine: w = scale * code + offset, float16 parameters, 1-8 bits (Q4_1's form)
    fp4      m0e4 (Transformer-Lite), e2m1 (OCP FP4)
    ggml     llama.cpp's block types as stored in GGUF files: q8_0, q4_0, q4_1, q5_0, q5_1,
             q2_k .. q6_k, tq1_0, tq2_0 (docs/ggml.md)

docs/contributing.md walks through adding one.
"""
from tmac.formats.base import DECLARED_OPS, FORMATS, Format, Op, get
from tmac.formats.weight import QuantizedWeight
from tmac.formats import uniform, affine, fp4, ggml  # noqa: E402,F401  (declaration order = table order)

__all__ = ["DECLARED_OPS", "FORMATS", "Format", "Op", "QuantizedWeight", "get"]
