"""Model weight formats, named the same everywhere (CLI, docs, bench, tests).

    f32      weights dequantized from the GGUF to float32, multiplied by numpy (BLAS)
    w4..w1   uniform 4/3/2/1-bit codes per group of ``group_size`` inputs; asymmetric (GPTQ
             zero point, the default) or symmetric (``sym=True``)
    ternary  BitNet b1.58 absmean ternary {-1, 0, +1}, one scale per tensor (2-bit codes)
    m0e4     Transformer-Lite's 4-bit float (value 1 + q/16 times a scale plus an offset),
             when tmac.quantize offers scheme "m0e4"

K of this model is 576 (attention, gate/up) or 1536 (down): the default group size 64 divides
both (128 does not divide 576).

The output head (the tied 49152 x 576 embedding, a fifth of the weights) is quantized with the
chosen format at 4 bits and above; below 4 bits it is kept at w4 (llama.cpp likewise keeps its
output tensor wider in its low-bit mixes). ``head_format`` says which.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FORMATS = ("f32", "w4", "w3", "w2", "w1", "ternary", "m0e4")
DEFAULT_GROUP_SIZE = 64


@dataclass(frozen=True)
class ModelFormat:
    name: str
    bits: int | None          # None for f32
    group_size: int | None
    scheme: str | None        # "asym", "sym", "ternary", "m0e4"; None for f32

    @property
    def is_float(self) -> bool:
        return self.name == "f32"

    @property
    def label(self) -> str:
        if self.is_float or self.scheme in ("ternary",):
            return self.name
        sym = ", sym" if self.scheme == "sym" else ""
        return f"{self.name} (g{self.group_size}{sym})"

    def quantize(self, w):
        """(M, K) float32 -> QuantizedWeight in this format (never called for f32)."""
        import tmac

        if self.scheme == "ternary":
            return tmac.quantize(w, scheme="ternary")
        return tmac.quantize(w, bits=self.bits, group_size=self.group_size, scheme=self.scheme)


def available_schemes():
    """Quantization schemes this tmac's ``tmac.quantize`` offers."""
    from tmac.reference.quantize import SCHEMES

    try:
        from tmac.fp4 import SCHEMES as FP4_SCHEMES
    except ImportError:
        FP4_SCHEMES = ()
    return tuple(SCHEMES) + tuple(FP4_SCHEMES)


def parse(name: str, group_size: int | None = None, sym: bool = False) -> ModelFormat:
    """A format name (+ options) -> ModelFormat; ValueError naming the valid choices."""
    if name not in FORMATS:
        raise ValueError(f"unknown format {name!r}; choose one of {', '.join(FORMATS)}")
    group_size = DEFAULT_GROUP_SIZE if group_size is None else int(group_size)
    if name == "f32":
        return ModelFormat("f32", None, None, None)
    if name == "ternary":
        return ModelFormat("ternary", 2, None, "ternary")
    if name == "m0e4":
        if "m0e4" not in available_schemes():
            raise ValueError("format m0e4 needs tmac.quantize(scheme='m0e4'), which this tmac "
                             "does not have yet")
        return ModelFormat("m0e4", 4, group_size, "m0e4")
    return ModelFormat(name, int(name[1]), group_size, "sym" if sym else "asym")


def head_format(fmt: ModelFormat) -> ModelFormat:
    """Format of the output head: the model's own at >= 4 bits (and f32), else w4 asym."""
    if fmt.is_float or (fmt.bits == 4 and fmt.scheme != "ternary"):
        return fmt
    return ModelFormat("w4", 4, fmt.group_size or DEFAULT_GROUP_SIZE, "asym")


def stack_rows(parts):
    """QuantizedWeights of equal K, bits, group size and scheme -> one with their rows stacked.

    Quantization is per row (per group within a row; ternary's per-tensor scale is stored per
    row), so stacking after quantizing gives each part exactly its own codes: Q, K and V (and
    gate and up) then share one table build and one kernel call.
    """
    from tmac.formats import QuantizedWeight

    first = parts[0]
    params = None
    if first.params is not None:             # m0e4 carries its native (a, b) per group
        params = tuple(np.vstack([p.params[i] for p in parts]) for i in range(2))
    return QuantizedWeight(np.vstack([p.codes for p in parts]), np.vstack([p.scales for p in parts]),
                           np.vstack([p.zeros for p in parts]), first.bits, first.group_size,
                           first.scheme, params=params)
