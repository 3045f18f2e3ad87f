"""llama.cpp's own block types as formats: the weights of a GGUF file run as they are stored.

One class per GGML type (tmac.reference.ggml is the specification of each block layout). A
block type is "integer code times a per-group float scale, plus a per-group float offset or a
fixed zero point" once its two-level scales are multiplied out (exactly, in float32), so it runs
on the same lookup kernels, reading the parameters compactly (tmac.layout):

    Q8_0, Q4_0, Q5_0, TQ1_0, TQ2_0   float16 scale per block, fixed zero point   (fixed_zero)
    Q4_1, Q5_1                        float16 scale and offset per block          (affine)
    Q3_K, Q6_K                        float16 d per 256, integer scale per group  (two_level)
    Q2_K, Q4_K, Q5_K                  and float16 dmin per 256, integer min       (two_level_affine)

    qw = FORMATS["q4_k"].from_blocks(raw, (M, K))     the tensor's bytes, as in the file
    raw = qw.format.blocks(qw)                        the same bytes back

``tmac.quantize(w, scheme="q4_0")`` fits with tmac's reference quantizer of the type (llama.cpp's
bytes for the legacy and TQ types; a simple fit for the K-quants).
"""
from __future__ import annotations

import numpy as np

from tmac.formats.base import Format
from tmac.formats.weight import QuantizedWeight
from tmac.reference import affine as _affine
from tmac.reference import ggml as _ggml
from tmac.reference import lut_matmul as _lut


class _BlockFormat(Format):
    """A GGML block type (``type_name``) as a format."""

    type_name = ""
    ops = ("lut_matmul", "dequant_matmul")
    requantizes = False           # a model runs them natively (--format native), as in the file

    @property
    def block(self):
        return _ggml.get(self.type_name)

    def __init_subclass__(cls, **kwargs):
        block = _ggml.get(cls.type_name)
        cls.name = cls.type_name.lower()
        cls.widths = (block.bits,)
        cls.k_multiple = block.block_size
        cls.form = "affine" if block.form == "affine" else "zero_point"
        cls.summary = f"llama.cpp {cls.type_name}: {block.block_size}-weight blocks of " \
                      f"{block.type_size} bytes, {block.bits}-bit codes ({cls.__doc__.strip()})"
        blocks = {"ggml.blocks": "(M, K // block_size * type_size) uint8 the tensor's GGML "
                                 "blocks, as in a GGUF file"}
        if cls.form == "affine":                 # the affine epilogue's tensors too
            from tmac.formats.affine import Affine

            cls.golden_tensors = {**blocks, **Affine.golden_tensors}
            cls.golden_skips = Affine.golden_skips
        else:
            cls.golden_tensors = blocks
        super().__init_subclass__(**kwargs)

    # ---- blocks <-> weights --------------------------------------------------------------

    def resolve(self, bits, group_size, k):
        """The type fixes the width and the group size; K must be whole blocks."""
        from tmac import validation

        block = self.block
        if bits is not None:
            bits = validation.integer("bits", bits)
            if bits != block.bits:
                raise ValueError(self.bits_error(bits))
        if k % block.block_size:
            raise ValueError(f"K={k} is not a multiple of {self.type_name}'s block of "
                             f"{block.block_size} weights")
        return block.bits, block.group_size

    def bits_error(self, bits):
        return f"bits must be {self.block.bits} for scheme {self.name!r} ({self.type_name}), got {bits}"

    def quantize(self, w, bits, group_size):
        return self.from_blocks(self.block.quantize(np.ascontiguousarray(w, np.float32).reshape(-1)),
                                w.shape)

    def from_blocks(self, raw, shape, where="tensor"):
        """A QuantizedWeight from a tensor's raw GGML bytes; shape (M, K) in numpy order.
        ValueError naming ``where`` for a wrong size or NaN/Inf scales."""
        from tmac import layout

        try:
            decoded = _ggml.decode_matrix(self.type_name, np.asarray(raw, np.uint8), tuple(shape))
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from None
        _ggml.check_finite(decoded, where)
        block = self.block
        scales, second = decoded.group_params()
        zeros = second if block.form == "affine" else np.full(scales.shape, second, np.float32)
        packed = layout.pack(decoded.codes, block.bits)
        packed = packed._replace(**dict(zip(("scales_t", "zeros_t"), self._kernel_params(decoded))))
        return QuantizedWeight(decoded.codes, scales, zeros, block.bits, block.group_size,
                               self.name, packed=packed)

    def _kernel_params(self, decoded):
        """(scales_t, zeros_t) in the compact form the kernels read (tmac.layout)."""
        from tmac import layout

        block = self.block
        if block.two_level:
            groups_per_block = block.block_size // block.group_size
            d = decoded.d.astype(np.float32)
            second = ((decoded.dmin.astype(np.float32), decoded.mn) if block.form == "affine"
                      else block.zero)
            return layout.pack_two_level(d, decoded.sc, second)
        scales = np.repeat(decoded.d.astype(np.float32), block.block_size // block.group_size, axis=1)
        if block.form == "affine":
            offsets = np.repeat(decoded.m.astype(np.float32), block.block_size // block.group_size,
                                axis=1)
            return layout.pack_params(scales, offsets, form="affine")
        return layout.pack_fixed_zero(scales, block.zero)

    def decoded(self, qw):
        """The weight's blocks decoded (codes and the type's own parameters), from its layout."""
        from tmac import layout

        block, p = self.block, qw.packed
        m, k = qw.shape
        nb = k // block.block_size

        def rows(t, dtype):
            return layout.untranspose_rows(t, m).astype(dtype)

        fields = {"codes": qw.codes.reshape(m, k)}
        if block.two_level:
            fields["d"] = rows(p.scales_t[0], np.uint16).view(np.float16)
            fields["sc"] = rows(p.scales_t[1], p.scales_t[1].dtype)
            if block.form == "affine":
                fields["dmin"] = rows(p.zeros_t[0], np.uint16).view(np.float16)
                fields["mn"] = rows(p.zeros_t[1], np.uint8)
        else:
            per = block.block_size // block.group_size
            fields["d"] = rows(p.scales_t, np.uint16).view(np.float16)[:, ::per][:, :nb]
            if block.form == "affine":
                fields["m"] = rows(p.zeros_t, np.uint16).view(np.float16)[:, ::per][:, :nb]
        return _ggml.Decoded.from_fields(self.type_name, **fields)

    def stack(self, parts):
        """Rows stacked through the blocks themselves (the same bytes, one tensor)."""
        return self.from_blocks(np.vstack([self.blocks(p) for p in parts]),
                                (sum(p.shape[0] for p in parts), parts[0].shape[1]))

    def blocks(self, qw):
        """The weight's GGML bytes (M, K // block_size * type_size) uint8, as in a file."""
        return _ggml.encode_matrix(self.type_name, self.decoded(qw))

    # ---- the specification of its products -----------------------------------------------

    def dequantize(self, qw):
        m, k = qw.shape
        return self.block.dequantize(self.blocks(qw)).reshape(m, k)

    def lut_reference(self, qw, x, act_group_size, lut):
        if self.form == "affine":
            return _affine.lut_matmul(qw.codes, qw.scales, qw.zeros, qw.bits, x, act_group_size, lut)
        return _lut.lut_matmul(qw.codes, qw.scales, qw.zeros, qw.bits, x, act_group_size, lut)

    def block_values(self, lut, xsum, scales, zeros, bits, blocks):
        if self.form == "affine":
            return _affine.block_values(lut, xsum, scales, zeros, bits, blocks)
        return _lut.block_values(lut, xsum, scales, zeros, bits, blocks)

    def dequant_reference(self, qw, x):
        return _lut.sequential_sum(np.asarray(x, np.float32)[:, None, :] * self.dequantize(qw)[None])

    def nbytes(self, qw):
        return qw.packed.nbytes

    def label(self, bits, group_size, k=None):
        return self.type_name

    # ---- benchmarks, golden files --------------------------------------------------------

    def random(self, m, k, bits, group_size, rng):
        w = (rng.standard_normal((m, k)) * 0.05).astype(np.float32)
        return self.quantize(w, bits, group_size)

    def golden_cases(self):
        block = self.block
        k = 2 * block.block_size if block.block_size > 32 else 64
        act = min(block.group_size, 32)
        return [(f"{self.name}_m5k{k}_g{block.group_size}_a{act}_int8_n2", self.name, block.bits,
                 5, k, 2, block.group_size, act, "int8", "normal")]

    def golden_stages(self, params, w, x):
        qw = self.quantize(w, None, None)
        stages = {"quantize.codes": qw.codes, "quantize.scales": qw.scales,
                  "ggml.blocks": self.blocks(qw)}
        stages["affine.offsets" if self.form == "affine" else "quantize.zeros"] = qw.zeros
        return stages, (np.asarray(qw.codes), np.asarray(qw.scales), np.asarray(qw.zeros), qw.bits)

    def golden_weight(self, params, tensors):
        m, k = np.asarray(tensors["quantize.codes"]).shape
        return self.from_blocks(tensors["ggml.blocks"], (m, k), where="golden case")

    def golden_epilogue(self, codes, scales, zeros, bits, lut_values, xsum, blocks):
        if self.form == "affine":
            c = np.float32((2**bits - 1) / 2)
            wg = blocks.weight_group
            code_dot = lut_values + c * xsum[:, None, :]
            block = scales[None, :, wg] * code_dot + zeros[None, :, wg] * xsum[:, None, :]
            return {"dequantize.w": _affine.dequantize(codes, scales, zeros),
                    "affine.code_dot": code_dot, "affine.block": block,
                    "check.y": _affine.epilogue(lut_values, xsum, scales, zeros, bits, blocks)}
        return super().golden_epilogue(codes, scales, zeros, bits, lut_values, xsum, blocks)


class Q8_0(_BlockFormat):
    """w = d * q, q int8"""
    type_name = "Q8_0"


class Q4_0(_BlockFormat):
    """w = d * (q - 8)"""
    type_name = "Q4_0"


class Q4_1(_BlockFormat):
    """w = d * q + m"""
    type_name = "Q4_1"


class Q5_0(_BlockFormat):
    """w = d * (q - 16)"""
    type_name = "Q5_0"


class Q5_1(_BlockFormat):
    """w = d * q + m"""
    type_name = "Q5_1"


class Q2_K(_BlockFormat):
    """w = d * sc * q - dmin * mn, groups of 16"""
    type_name = "Q2_K"


class Q3_K(_BlockFormat):
    """w = d * sc * (q - 4), groups of 16"""
    type_name = "Q3_K"


class Q4_K(_BlockFormat):
    """w = d * sc * q - dmin * mn, groups of 32"""
    type_name = "Q4_K"


class Q5_K(_BlockFormat):
    """w = d * sc * q - dmin * mn, groups of 32"""
    type_name = "Q5_K"


class Q6_K(_BlockFormat):
    """w = d * sc * (q - 32), groups of 16"""
    type_name = "Q6_K"


class TQ1_0(_BlockFormat):
    """ternary, 5 trits per byte: w = d * (q - 1)"""
    type_name = "TQ1_0"


class TQ2_0(_BlockFormat):
    """ternary, 2 bits per trit: w = d * (q - 1)"""
    type_name = "TQ2_0"
