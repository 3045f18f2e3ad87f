"""The uniform integer formats: w = (code - zero) * scale with an integer zero per group.

    asym     GPTQ/AWQ: a fitted integer zero per group (``reference.quantize.quantize_asym``)
    sym      llama.cpp Q4_0 style: zero fixed at 2^(bits-1)
    ternary  BitNet b1.58: codes {1, 2, 3} (zero 2), one scale per tensor

All three run the table-lookup product on their own (scales, zeros); their integer zeros also
let the AVX-512 kernel read them as one byte each.
"""
from __future__ import annotations

import numpy as np

from tmac.formats.base import Format
from tmac.formats.weight import QuantizedWeight
from tmac.reference import quantize as _quantize

UNIFORM_OPS = ("lut_matmul", "dequant_matmul", "int4_dequant_matmul")   # int4: codes < 16 only


class _Uniform(Format):
    """Shared by the integer-zero formats: the reference quantizer's three arrays are the
    lookup path's inputs."""

    widths = tuple(range(1, 9))
    ops = UNIFORM_OPS

    def golden_stages(self, params, w, x):
        codes, scales, zeros = _quantize.quantize(w, params["bits"], params["group_size"], self.name)
        stages = {"quantize.codes": codes, "quantize.scales": scales, "quantize.zeros": zeros}
        return stages, (codes, scales, zeros, params["bits"])

    def golden_weight(self, params, tensors):
        codes = np.ascontiguousarray(tensors["quantize.codes"], np.uint8)
        scales = np.ascontiguousarray(tensors["quantize.scales"], np.float32)
        zeros = np.ascontiguousarray(tensors["quantize.zeros"], np.float32)
        return QuantizedWeight(codes, scales, zeros, int(params["bits"]),
                               codes.shape[1] // scales.shape[1], self.name)

    def _random_scales(self, m, n_groups, bits, rng):
        return (rng.random((m, n_groups)) + 0.5).astype(np.float32) / 2**bits


class Asym(_Uniform):
    name = "asym"
    summary = "GPTQ/AWQ: integer zero point per group, fitted with a range search"

    def quantize(self, w, bits, group_size):
        codes, scales, zeros = _quantize.quantize_asym(w, bits, group_size)
        return QuantizedWeight(codes, scales, zeros, bits, group_size, self.name)

    def random(self, m, k, bits, group_size, rng):
        g = k // group_size
        codes = rng.integers(0, 2**bits, (m, k)).astype(np.uint8)
        scales = self._random_scales(m, g, bits, rng)
        zeros = rng.integers(0, 2**bits, (m, g)).astype(np.float32)
        return QuantizedWeight(codes, scales, zeros, bits, group_size, self.name)


class Sym(_Uniform):
    name = "sym"
    summary = "llama.cpp Q4_0 style: zero fixed at 2^(bits-1), scale from the largest magnitude"
    stores_zeros = False

    def quantize(self, w, bits, group_size):
        codes, scales, zeros = _quantize.quantize_sym(w, bits, group_size)
        return QuantizedWeight(codes, scales, zeros, bits, group_size, self.name)

    def random(self, m, k, bits, group_size, rng):
        g = k // group_size
        codes = rng.integers(0, 2**bits, (m, k)).astype(np.uint8)
        zeros = np.full((m, g), 2.0 ** (bits - 1), np.float32)
        return QuantizedWeight(codes, self._random_scales(m, g, bits, rng), zeros, bits,
                               group_size, self.name)


class Ternary(_Uniform):
    name = "ternary"
    summary = "BitNet b1.58: {-1, 0, +1} as 2-bit codes {1, 2, 3}, one absmean scale per tensor"
    widths = (2,)
    stores_zeros = False
    grouped = False

    def resolve(self, bits, group_size, k):
        """Always 2-bit codes and one group per row (the scale is per tensor): both ignored."""
        return 2, k

    def quantize(self, w, bits, group_size):
        codes, scales, zeros = _quantize.quantize_ternary(w)
        return QuantizedWeight(codes, scales, zeros, 2, w.shape[1], self.name)

    def label(self, bits, group_size, k=None):
        return "ternary"

    def random(self, m, k, bits, group_size, rng):
        codes = rng.integers(1, 4, (m, k)).astype(np.uint8)
        scales = rng.random((m, 1)).astype(np.float32)
        return QuantizedWeight(codes, scales, np.full((m, 1), 2.0, np.float32), 2, k, self.name)
