"""The affine family: w = scale * code + offset with a float offset per group, 1 to 8 bits,
float16 scale and offset (llama.cpp's Q4_1/Q5_1 form; tmac.reference.affine is the spec).

``tmac.quantize(w, scheme="affine", fit=...)`` fits by "lsq" (least squares from the range,
the default), "minmax" (round to nearest on the group's range) or "hqq" (half-quadratic
optimisation of an lp error, p < 1, Badri & Shaji 2023); every fit gives the same kind of
weight, so the kernels and dequantization do not depend on it.

The QuantizedWeight's ``zeros`` slot holds the offsets (the second group parameter); the LUT
kernels read both parameters as float16 and apply the affine epilogue
(tmac.kernels.epilogue), bit for bit as tmac.reference.affine.lut_matmul.
"""
from __future__ import annotations

import numpy as np

from tmac.formats.base import Format
from tmac.formats.weight import QuantizedWeight
from tmac.reference import affine as _affine


class Affine(Format):
    name = "affine"
    summary = ("w = scale * code + offset, a float offset per group (llama.cpp's Q4_1/Q5_1 form), "
               "float16 parameters")
    widths = _affine.WIDTHS
    fits = ("lsq", "minmax", "hqq")        # tmac.reference.affine's fits, the default first
    ops = ("lut_matmul", "dequant_matmul")
    form = "affine"
    golden_tensors = {
        "affine.offsets": "(M, K // group_size) float32 (float16 values) offset per weight group: "
                          "w = scale * code + offset",
        "affine.code_dot": "(N, M, nblocks) float32 lut + c * xsum, c = (2^bits - 1)/2: the "
                           "block's sum of code * x",
        "affine.block": "(N, M, nblocks) float32 scale * code_dot + offset * xsum",
    }
    golden_skips = ("quantize.zeros", "epilogue.offsets", "epilogue.block")

    def quantize(self, w, bits, group_size, fit="lsq"):
        codes, scales, offsets = _affine.quantize(w, bits, group_size, fit)
        return QuantizedWeight(codes, scales, offsets, bits, group_size, self.name)

    def dequantize(self, qw):
        return _affine.dequantize(qw.codes, qw.scales, qw.zeros)

    def lut_reference(self, qw, x, act_group_size, lut):
        return _affine.lut_matmul(qw.codes, qw.scales, qw.zeros, qw.bits, x, act_group_size, lut)

    def block_values(self, lut, xsum, scales, offsets, bits, blocks):
        return _affine.block_values(lut, xsum, scales, offsets, bits, blocks)

    def dequant_reference(self, qw, x):
        return _affine.dequant_matmul(qw.codes, qw.scales, qw.zeros, x)

    def random(self, m, k, bits, group_size, rng):
        g = k // group_size
        codes = rng.integers(0, 2**bits, (m, k)).astype(np.uint8)
        scales = ((rng.random((m, g)) + 0.5) / 2**bits).astype(np.float16).astype(np.float32)
        offsets = (rng.standard_normal((m, g)) * 0.5).astype(np.float16).astype(np.float32)
        return QuantizedWeight(codes, scales, offsets, bits, group_size, self.name)

    def golden_stages(self, params, w, x):
        codes, scales, offsets = _affine.quantize(w, params["bits"], params["group_size"])
        stages = {"quantize.codes": codes, "quantize.scales": scales, "affine.offsets": offsets}
        return stages, (codes, scales, offsets, params["bits"])

    def golden_weight(self, params, tensors):
        codes = np.ascontiguousarray(tensors["quantize.codes"], np.uint8)
        scales = np.ascontiguousarray(tensors["quantize.scales"], np.float32)
        offsets = np.ascontiguousarray(tensors["affine.offsets"], np.float32)
        return QuantizedWeight(codes, scales, offsets, int(params["bits"]),
                               codes.shape[1] // scales.shape[1], self.name)

    def golden_epilogue(self, codes, scales, offsets, bits, lut_values, xsum, blocks):
        c = np.float32((2**bits - 1) / 2)
        code_dot = lut_values + c * xsum[:, None, :]
        wg = blocks.weight_group
        block = scales[None, :, wg] * code_dot + offsets[None, :, wg] * xsum[:, None, :]
        return {"dequantize.w": _affine.dequantize(codes, scales, offsets),
                "affine.code_dot": code_dot, "affine.block": block,
                "check.y": _affine.epilogue(lut_values, xsum, scales, offsets, bits, blocks)}
