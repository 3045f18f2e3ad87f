"""The golden cases: their parameters, their inputs, and every stage computed by ``tmac/reference/``.

A case is a dict of parameters (``CASES``). ``stages(params, w, x)`` runs the reference on the
inputs and returns every tensor of the case, in pipeline order, under the names of ``TENSORS``.
Export calls it on generated inputs; verify calls it again on the inputs read back from the file,
so a golden file is checked against the reference of the tmac that reads it.

Adding a case is one line in ``_ROWS``. A weight format brings its own quantizer stages, tensors
and weight (``tmac.formats.Format.golden_*``); everything after quantization is shared. A format
no hand-written row uses gets the format's default cases, so a new format is exported as soon as
it is declared.
"""
from __future__ import annotations

import numpy as np

from tmac.formats import FORMATS
from tmac.registry import OPS
from tmac.reference import bitplanes, lut_matmul, tables

# ---- the cases -------------------------------------------------------------------------------
# name, scheme, bits, M, K, N, group_size, act_group_size, lut, x_pattern
# group_size / act_group_size are resolved integers (K for a whole-row weight group,
# Kp = ceil(K/4)*4 for one activation group per row). Shapes are deliberately not multiples of
# the kernel tiles (64 rows, 16 columns) and include K not a multiple of 4 (K = 38: padded).
_ROWS = [
    # bits 1-4, asym and sym, small shape, int8 tables, one token
    ("b1_asym_m5k36_g12_a12_int8_n1", "asym", 1, 5, 36, 1, 12, 12, "int8", "normal"),
    ("b2_asym_m5k36_g12_a12_int8_n1", "asym", 2, 5, 36, 1, 12, 12, "int8", "normal"),
    ("b3_asym_m5k36_g12_a12_int8_n1", "asym", 3, 5, 36, 1, 12, 12, "int8", "normal"),
    ("b4_asym_m5k36_g12_a12_int8_n1", "asym", 4, 5, 36, 1, 12, 12, "int8", "normal"),
    ("b1_sym_m5k36_g12_a12_int8_n1", "sym", 1, 5, 36, 1, 12, 12, "int8", "normal"),
    ("b2_sym_m5k36_g12_a12_int8_n1", "sym", 2, 5, 36, 1, 12, 12, "int8", "normal"),
    ("b3_sym_m5k36_g12_a12_int8_n1", "sym", 3, 5, 36, 1, 12, 12, "int8", "normal"),
    ("b4_sym_m5k36_g12_a12_int8_n1", "sym", 4, 5, 36, 1, 12, 12, "int8", "normal"),
    # float32 tables, several tokens, whole-row weight group with smaller activation groups
    ("b1_asym_m5k36_grow_a8_f32_n2", "asym", 1, 5, 36, 2, 36, 8, "float32", "normal"),
    ("b2_sym_m5k36_g4_a36_f32_n2", "sym", 2, 5, 36, 2, 4, 36, "float32", "normal"),
    ("b3_asym_m5k36_g36_a36_f32_n2", "asym", 3, 5, 36, 2, 36, 36, "float32", "normal"),
    ("b4_asym_m5k36_g12_a12_f32_n2", "asym", 4, 5, 36, 2, 12, 12, "float32", "normal"),
    # K not a multiple of 4 (padded to 40), whole-row group, activation groups of 8 and the row
    ("b2_asym_m5k38_grow_a8_int8_n2", "asym", 2, 5, 38, 2, 38, 8, "int8", "normal"),
    ("b3_sym_m5k38_grow_arow_f32_n1", "sym", 3, 5, 38, 1, 38, 40, "float32", "normal"),
    # more rows than one 64-row tile, K = 100 (not a multiple of 16)
    ("b4_asym_m70k100_g20_a20_int8_n3", "asym", 4, 70, 100, 3, 20, 20, "int8", "normal"),
    ("b3_asym_m70k100_g20_a40_int8_n1", "asym", 3, 70, 100, 1, 20, 40, "int8", "normal"),
    ("b2_sym_m70k100_grow_a32_int8_n2", "sym", 2, 70, 100, 2, 100, 32, "int8", "normal"),
    ("b1_asym_m70k100_g20_a20_f32_n2", "asym", 1, 70, 100, 2, 20, 20, "float32", "normal"),
    # ternary (BitNet b1.58): 2-bit codes {1, 2, 3}, one scale per tensor
    ("ternary_m70k100_a20_int8_n1", "ternary", 2, 70, 100, 1, 100, 20, "int8", "normal"),
    ("ternary_m5k36_arow_f32_n3", "ternary", 2, 5, 36, 3, 36, 36, "float32", "normal"),
    # an all-zero activation group: table scale 0, inverse 0, zero int8 entries
    ("b2_asym_m5k36_g12_a12_int8_n2_zero_group", "asym", 2, 5, 36, 2, 12, 12, "int8", "zero_group"),
    # activations on a grid of 0.5 with every table scale exactly 1: exact cancellations,
    # half-integer table entries (round half to even) and an entry of exactly 127
    ("b4_sym_m5k36_g12_a12_int8_n2_ties", "sym", 4, 5, 36, 2, 12, 12, "int8", "ties"),
    ("b3_asym_m5k38_grow_a8_int8_n1_ties", "asym", 3, 5, 38, 1, 38, 8, "int8", "ties"),
    # FP4. M0E4 (Transformer-Lite; reference.m0e4, lsq fit): bit-trick dequantization, and the
    # LUT path through its affine (scales, zeros) with float zeros. E2M1 (OCP; reference.e2m1,
    # absmax scales) is not affine in its code: dequantize-then-multiply only (lut "none").
    ("m0e4_m5k36_g12_a12_int8_n2", "m0e4", 4, 5, 36, 2, 12, 12, "int8", "normal"),
    ("m0e4_m70k100_g20_a20_f32_n1", "m0e4", 4, 70, 100, 1, 20, 20, "float32", "normal"),
    ("e2m1_m5k36_g12_n2", "e2m1", 4, 5, 36, 2, 12, 12, "none", "normal"),
    ("e2m1_m70k100_g20_n1", "e2m1", 4, 70, 100, 1, 20, 20, "none", "normal"),
]
_KEYS = ("name", "scheme", "bits", "m", "k", "n", "group_size", "act_group_size", "lut", "x_pattern")
_ROWS += [row for fmt in FORMATS.values() if all(r[1] != fmt.name for r in _ROWS)
          for row in fmt.golden_cases()]
CASES = [dict(zip(_KEYS, row)) for row in _ROWS]
X_PATTERNS = ("normal", "zero_group", "ties")


# ---- deterministic inputs (independent of numpy's random generators) ---------------------------

def _splitmix64(seed: int, count: int) -> np.ndarray:
    """``count`` uint64 from the SplitMix64 sequence of ``seed`` (wrapping uint64 arithmetic)."""
    with np.errstate(over="ignore"):
        z = np.uint64(seed) + np.uint64(0x9E3779B97F4A7C15) * np.arange(1, count + 1, dtype=np.uint64)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def uniform(seed: int, shape) -> np.ndarray:
    """float32 in [-1, 1), multiples of 2^-23, from the top 24 bits of SplitMix64."""
    count = int(np.prod(shape))
    top = (_splitmix64(seed, count) >> np.uint64(40)).astype(np.int64) - (1 << 23)
    return (top.astype(np.float32) * np.float32(2.0 ** -23)).reshape(shape)


def bell(seed: int, shape) -> np.ndarray:
    """A bell-shaped float32 sample: (u1 + u2) + u3 of three independent uniforms."""
    u = [uniform(seed * 3 + i, shape) for i in range(3)]
    return ((u[0] + u[1]) + u[2]).astype(np.float32)


def case_seed(name: str) -> int:
    """A seed from the case name (FNV-1a, 32 bits), so reordering cases changes no bytes."""
    h = 0x811C9DC5
    for byte in name.encode():
        h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
    return h


def inputs(params) -> tuple[np.ndarray, np.ndarray]:
    """(w (M, K), x (N, K)) float32 for a case: w bell-shaped, x by the case's x_pattern."""
    seed, m, k, n = case_seed(params["name"]), params["m"], params["k"], params["n"]
    w = (bell(seed, (m, k)) * np.float32(0.05)).astype(np.float32)
    x = bell(seed + 1, (n, k))
    if params["x_pattern"] == "zero_group":
        x[:, :params["act_group_size"]] = 0           # the first activation group of every token
    elif params["x_pattern"] == "ties":
        # multiples of 0.5 in [-24, 24]; the first 4-group of every activation group is
        # 31.75 x 4, so its absum 127 is the group's maximum and the table scale is exactly 1
        x = (np.rint(x * np.float32(16)) / np.float32(2)).astype(np.float32)
        x[:, 0:k:params["act_group_size"]] = np.float32(31.75)
        for t in range(1, 4):
            x[:, t:k:params["act_group_size"]] = np.float32(31.75)
    elif params["x_pattern"] != "normal":
        raise ValueError(f"unknown x_pattern {params['x_pattern']!r}")
    return w, x


# ---- tensors and stages ------------------------------------------------------------------------
# name -> (stage, description). Order is pipeline order, and the order in every file.
TENSORS = {
    "input.w": ("input", "(M, K) float32 weights, the quantizer's input"),
    "input.x": ("input", "(N, K) float32 activations, one row per token"),
    "quantize.codes": ("quantize", "(M, K) uint8 codes in [0, 2^bits)"),
    "quantize.scales": ("quantize", "(M, K // group_size) float32 scale per weight group"),
    "quantize.zeros": ("quantize", "(M, K // group_size) float32 zero point per weight group"),
    **{name: (name.split(".")[0], meaning) for fmt in FORMATS.values()
       for name, meaning in fmt.golden_tensors.items()},
    "dequantize.w": ("dequantize", "(M, K) float32 the format's dequantization: (code - zero) * "
                                   "scale, or code * scale + offset (affine)"),
    "blocks.start": ("blocks", "(nblocks,) int32 first padded-K column of each block"),
    "blocks.stop": ("blocks", "(nblocks,) int32 end (exclusive) of each block"),
    "blocks.weight_group": ("blocks", "(nblocks,) int32 weight group of each block"),
    "blocks.act_group": ("blocks", "(nblocks,) int32 activation group of each block"),
    "pad.x": ("pad", "(N, Kp) float32 activations with zero columns up to Kp"),
    "bitplanes.planes": ("bitplanes", "(bits, M, Kp) uint8 0/1: bit i of the padded codes"),
    "bitplanes.indices": ("bitplanes", "(bits, M, Kp/4) uint8 table index per plane, row, 4-group"),
    "layout.packed": ("layout", "(ceil(M/64), ceil(Kp/16), bits, 2, 64) uint8 kernel layout"),
    "tables.float": ("tables", "(N, Kp/4, 16) float32 mirrored tables"),
    "tables.scales": ("tables", "(N, n_act_groups) float32 int8-table scale per activation group"),
    "tables.inv_scales": ("tables", "(N, n_act_groups) float32 1/scale (0 where scale is 0)"),
    "tables.int8": ("tables", "(N, Kp/4, 16) int8 quantized tables"),
    "sums.plane_int": ("sums", "(N, bits, M, nblocks) int32 sum of int8 lookups per plane, block"),
    "sums.combined": ("sums", "(N, M, nblocks) int32 shift-accumulated P = sum_i 2^i * S_i"),
    "sums.plane_float": ("sums", "(N, bits, M, nblocks) float32 F_i: float lookups per plane"),
    "lut.values": ("lut", "(N, M, nblocks) float32 lut term of each block"),
    "epilogue.xsum": ("epilogue", "(N, nblocks) float32 activation sum of each block"),
    "epilogue.offsets": ("epilogue", "(M, K // group_size) float32 (2^bits - 1)/2 - zero"),
    "epilogue.block": ("epilogue", "(N, M, nblocks) float32 lut + offset * xsum"),
    "output.lut_matmul": ("output", "(N, M) float32 y by table lookup (op lut_matmul)"),
    "output.dequant_matmul": ("output", "(N, M) float32 y by dequantize-then-multiply "
                                        "(op dequant_matmul)"),
    "output.int4_dequant_matmul": ("output", "(N, M) float32 y by dequantize-then-multiply, "
                                             "codes < 16 (op int4_dequant_matmul)"),
    "output.m0e4_dequant_matmul": ("output", "(N, M) float32 y = sum_k m0e4.w * x, from 0.0 in "
                                             "increasing k (op m0e4_dequant_matmul)"),
    "output.e2m1_dequant_matmul": ("output", "(N, M) float32 y = sum_k e2m1.w * x, from 0.0 in "
                                             "increasing k (op e2m1_dequant_matmul)"),
}
# an op declared without an entry above still gets its output tensor, described by its summary
TENSORS.update({f"output.{name}": ("output", f"(N, M) float32 y by op {name}: {op.summary}")
                for name, op in OPS.items() if f"output.{name}" not in TENSORS})
INT8_ONLY = ("tables.scales", "tables.inv_scales", "tables.int8", "sums.plane_int", "sums.combined")
FLOAT32_ONLY = ("sums.plane_float",)


LUT_MODES = ("int8", "float32", "none")       # "none": the scheme has no lookup path
SCHEME_ONLY = tuple({name.split(".")[0] + "." for fmt in FORMATS.values()
                     for name in fmt.golden_tensors})       # tensors one format owns


def tensor_names(params) -> list[str]:
    """The tensors a case holds, in file order: its scheme's stages, the lookup path's stages
    (for its table mode) unless it has none, and ``output.<op>`` for every registry op that
    applies (``tmac.golden.backends``)."""
    from tmac.golden.backends import ops_for

    fmt = FORMATS[params["scheme"]]
    own, skips = tuple(fmt.golden_tensors), fmt.golden_skips
    outputs = {f"output.{op}" for op in ops_for(params)}
    if params["lut"] == "none":
        stages = [n for n in TENSORS if n.startswith(("input.", "quantize.codes"))
                  or n in own]
    else:
        skip = FLOAT32_ONLY if params["lut"] == "int8" else INT8_ONLY
        stages = [n for n in TENSORS if n not in skip and n not in skips
                  and not n.startswith("output.") and (not n.startswith(SCHEME_ONLY) or n in own)]
    return stages + [n for n in TENSORS if n in outputs]


def stages(params, w, x, ops) -> dict:
    """Every tensor of a case, computed by the reference from inputs w (M, K) and x (N, K).

    ``ops`` maps an op name of ``tmac.registry.OPS`` to a function (params, stage tensors,
    x) -> y (``tmac.golden.backends.op_runner``); each op that applies to the case becomes the
    tensor ``output.<op>``.
    """
    act, lut = params["act_group_size"], params["lut"]
    quant_stages, parts = FORMATS[params["scheme"]].golden_stages(params, w, x)
    out = {"input.w": w, "input.x": x, **quant_stages}
    if parts is not None:
        out.update(_lut_stages(params, parts, x, act, lut))
    from tmac.golden.backends import ops_for

    for op_name in ops_for(params):
        out[f"output.{op_name}"] = ops[op_name](params, out, x)
    if "output.lut_matmul" in out:
        _same("output.lut_matmul vs the staged epilogue", out.pop("check.y"), out["output.lut_matmul"])
    for name in [n for n in out if n.startswith("check.")]:
        _same(f"{name[6:]} vs the reference module", out.pop(name), out[name[6:]])
    result = {}
    for name in tensor_names(params):
        if name not in out:
            raise KeyError(f"case {params['name']}: stage {name!r} was not computed")
        array = np.asarray(out[name])
        if array.dtype.kind in "iu" and array.dtype.itemsize > 4:     # index/sum arrays: int32
            if array.size and (array.min() < -2**31 or array.max() >= 2**31):
                raise OverflowError(f"case {params['name']}: {name} does not fit int32")
            array = array.astype(np.int32)
        result[name] = np.ascontiguousarray(array)
    extra = set(out) - set(TENSORS)
    if extra:
        raise KeyError(f"case {params['name']}: stages {sorted(extra)} have no entry in TENSORS")
    return result


def _lut_stages(params, parts, x, act, lut):
    """Every stage from (codes, scales, zeros, bits) on: the shared lookup path and the ops."""
    codes, scales, zeros, bits = parts
    m, k = codes.shape
    blocks = lut_matmul.make_blocks(k, k // scales.shape[1], act)
    kp = blocks.k_padded
    xp = lut_matmul.pad_columns(x, kp)
    planes = bitplanes.split(lut_matmul.pad_columns(codes, kp), bits)
    indices = bitplanes.group_indices(planes)
    from tmac import layout                      # the kernel layout's definition (pure numpy)

    out = {"blocks.start": blocks.start, "blocks.stop": blocks.stop,
           "blocks.weight_group": blocks.weight_group, "blocks.act_group": blocks.act_group,
           "pad.x": xp, "bitplanes.planes": planes, "bitplanes.indices": indices,
           "layout.packed": layout.pack(codes, bits).data}
    table_set = tables.build_tables_mirrored(xp)
    out["tables.float"] = table_set
    if lut == "int8":
        qtables, tscales = tables.quantize_tables(table_set, xp, act)
        per_plane = lut_matmul.plane_sums(qtables, indices, blocks)
        combined = lut_matmul.integer_sums(per_plane)
        out.update({"tables.scales": tscales, "tables.inv_scales": tables.inverse_scales(tscales),
                    "tables.int8": qtables, "sums.plane_int": per_plane, "sums.combined": combined})
        lut_values = lut_matmul.lut_from_int8(combined, tscales, blocks)
    else:
        per_plane = np.stack([_float_plane_sums(t, indices, blocks) for t in table_set])
        out["sums.plane_float"] = per_plane
        lut_values = np.stack([lut_matmul.lut_from_float(t, indices, blocks) for t in table_set])
        combined = np.zeros_like(lut_values)       # F_i combined as the contract says
        for i in range(bits):
            combined = combined + per_plane[:, i] * np.float32(2.0 ** (i - 1))
        _same("lut.values from plane sums", combined, lut_values)
    xsum = lut_matmul.block_sums(xp, blocks)
    out.update({"lut.values": lut_values, "epilogue.xsum": xsum})
    # the format's epilogue form: dequantized weights, its epilogue stages and check.y
    out.update(FORMATS[params["scheme"]].golden_epilogue(codes, scales, zeros, bits, lut_values,
                                                         xsum, blocks))
    return out


def _float_plane_sums(table_set, indices, blocks):
    """F_i per block: float32 lookups summed from 0.0 in increasing 4-group. -> (bits, M, nblocks)."""
    looked_up = lut_matmul.lookup(table_set, indices)                 # (bits, M, G)
    return np.stack([lut_matmul.sequential_sum(looked_up[:, :, lo:hi])
                     for lo, hi in zip(blocks.start // 4, blocks.stop // 4)], axis=-1)


def _same(what, a, b):
    if a.shape != b.shape or not np.array_equal(np.asarray(a).view(np.uint8),
                                                np.asarray(b).view(np.uint8)):
        raise AssertionError(f"reference disagrees with itself: {what}")
