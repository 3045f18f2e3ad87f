"""Model weight formats, named the same everywhere (CLI, docs, bench, tests), from the format table.

    f32          weights dequantized from the GGUF to float32, multiplied by numpy (BLAS)
    w4..w1       the default integer format (asym: GPTQ zero point per group of ``group_size``
                 inputs) at 4..1 bits; ``sym=True`` takes the symmetric format instead
    <name><bits> any format of ``tmac.formats.FORMATS`` with several widths, e.g. sym3
    <name>       a format with one width, e.g. ternary, m0e4, e2m1

K of this model is 576 (attention, gate/up) or 1536 (down): the default group size 64 divides
both (128 does not divide 576).

The output head (the tied 49152 x 576 embedding, a fifth of the weights) is quantized with the
chosen format at 4 bits and above; below 4 bits it is kept at w4 (llama.cpp likewise keeps its
output tensor wider in its low-bit mixes). ``head_format`` says which.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tmac.formats import FORMATS as WEIGHT_FORMATS

DEFAULT_SCHEME = "asym"         # what w1..w4 mean
SYMMETRIC_SCHEME = "sym"        # what w1..w4 mean with sym=True
DEFAULT_GROUP_SIZE = 64


def _names():
    """Every model format name, from the format table."""
    names = ["f32"]
    for fmt in WEIGHT_FORMATS.values():
        if fmt.name == DEFAULT_SCHEME:
            names += [f"w{b}" for b in sorted(fmt.widths, reverse=True)]
        elif len(fmt.widths) > 1:
            names += [f"{fmt.name}{b}" for b in sorted(fmt.widths, reverse=True)]
        else:
            names.append(fmt.name)
    return tuple(names)


FORMATS = _names()


@dataclass(frozen=True)
class ModelFormat:
    name: str
    bits: int | None          # None for f32
    group_size: int | None    # None for f32 and formats with one scale per tensor (ternary)
    scheme: str | None        # a format of tmac.formats.FORMATS; None for f32

    @property
    def is_float(self) -> bool:
        return self.scheme is None

    @property
    def label(self) -> str:
        if self.is_float or self.group_size is None:
            return self.name
        implied = (DEFAULT_SCHEME if self.name.startswith("w") and self.name[1:].isdigit()
                   else self.scheme)
        other = f", {self.scheme}" if self.scheme != implied else ""
        return f"{self.name} (g{self.group_size}{other})"

    def quantize(self, w):
        """(M, K) float32 -> QuantizedWeight in this format (never called for f32)."""
        import tmac

        return tmac.quantize(w, bits=self.bits, group_size=self.group_size, scheme=self.scheme)


def parse(name: str, group_size: int | None = None, sym: bool = False) -> ModelFormat:
    """A format name (+ options) -> ModelFormat; ValueError naming the valid choices."""
    if name not in FORMATS:
        raise ValueError(f"unknown format {name!r}; choose one of {', '.join(FORMATS)}")
    group_size = DEFAULT_GROUP_SIZE if group_size is None else int(group_size)
    if name == "f32":
        return ModelFormat("f32", None, None, None)
    if name in WEIGHT_FORMATS:                            # a format with one width
        fmt = WEIGHT_FORMATS[name]
        return ModelFormat(name, fmt.widths[0], group_size if fmt.grouped else None, name)
    scheme = name.rstrip("0123456789")
    bits = int(name[len(scheme):])
    if scheme == "w":
        scheme = SYMMETRIC_SCHEME if sym else DEFAULT_SCHEME
    return ModelFormat(name, bits, group_size, scheme)


def head_format(fmt: ModelFormat) -> ModelFormat:
    """Format of the output head: the model's own at >= 4 bits (and f32), else w4 asym."""
    if fmt.is_float or (fmt.bits >= 4 and fmt.group_size is not None):
        return fmt
    return ModelFormat("w4", 4, fmt.group_size or DEFAULT_GROUP_SIZE, DEFAULT_SCHEME)


def stack_rows(parts):
    """QuantizedWeights of equal K, bits, group size and scheme -> one with their rows stacked.

    Quantization is per row (per group within a row; ternary's per-tensor scale is stored per
    row), so stacking after quantizing gives each part exactly its own codes: Q, K and V (and
    gate and up) then share one table build and one kernel call.
    """
    from tmac.formats import QuantizedWeight

    first = parts[0]
    params = None
    if first.params is not None:             # e.g. m0e4's native (a, b) per group
        params = tuple(np.vstack([p.params[i] for p in parts]) for i in range(len(first.params)))
    return QuantizedWeight(np.vstack([p.codes for p in parts]), np.vstack([p.scales for p in parts]),
                           np.vstack([p.zeros for p in parts]), first.bits, first.group_size,
                           first.scheme, params=params)
