"""The tmac specification: plain numpy, read top to bottom.

Every number tmac produces is defined here. The fast kernels in ``tmac.kernels`` must equal
these functions element for element (integers with ``==``, floats bit for bit); the order of
every floating-point operation is fixed in the docstrings and in docs/numerics.md.

Read the modules in this order:

1. ``quantize``       -- weights to b-bit codes (asymmetric, symmetric, ternary) and back
2. ``bitplanes``      -- codes as b one-bit planes
3. ``tables``         -- the 16-entry tables of +-1 partial sums, mirrored and int8-quantized
4. ``lut_matmul``     -- lookup, shift-accumulate and the float epilogue (GEMV and GEMM)
5. ``dequant_matmul`` -- the dequantize-then-multiply baseline everyone knows
6. ``m0e4``           -- Transformer-Lite's FP4 (1 + q/16 by two bit operations, then a*v + b);
                         affine in q, so it also runs through the LUT path
7. ``e2m1``           -- OCP FP4 E2M1 (MXFP4/NVFP4 elements) with a per-group scale
8. ``affine``         -- w = scale * code + float offset (llama.cpp's Q4_1 form), 1 to 8 bits,
                         float16 parameters; its own LUT epilogue
9. ``ggml``           -- llama.cpp's block types (Q8_0, Q4_0 ... Q6_K, TQ1_0, TQ2_0, F16, BF16):
                         block layouts, decode/encode, dequantization equal to gguf's
10. ``gptq``          -- GPTQ: one layer's weights fitted to ``affine`` form against the
                         Hessian 2 X^T X / n of calibration inputs (float64, lazy block updates)

After installation this package is ``tmac.reference``.
"""

from . import (affine, bitplanes, dequant_matmul, e2m1, ggml, gptq, lut_matmul, m0e4, quantize,
               tables)

__all__ = ["affine", "bitplanes", "dequant_matmul", "e2m1", "ggml", "gptq", "lut_matmul", "m0e4",
           "quantize", "tables"]
