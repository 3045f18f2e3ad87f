"""The format table: a weight format is one small class, declared once, registered by name.

Everything that depends on a format asks the table: ``tmac.quantize`` (fit and validation),
``tmac.matmul``/``dequant_matmul`` (which registry op runs it), ``QuantizedWeight`` (checks,
storage size, dequantization, display), ``tmac.explain``, ``tmac bench``, the golden export and
the model's formats. No format name is compared outside the format classes; a new format is a
new subclass in ``tmac/formats/`` (docs/contributing.md) and every table-driven test, benchmark,
explanation and golden case picks it up.

Operations (``Op``) are declared here too, beside the formats that bring them: an op names its
reference (the numpy spec) and a kernel factory per ISA path. ``tmac.registry.OPS`` lists them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ClassVar

import numpy as np

FORMATS: dict = {}          # name -> Format instance, in declaration order (the table)
DECLARED_OPS: dict = {}     # op name -> Op, in declaration order


def get(name):
    """The format called ``name``; ValueError naming the valid choices."""
    if not isinstance(name, str) or name not in FORMATS:
        raise ValueError(f"scheme must be one of {', '.join(map(repr, FORMATS))}; got {name!r}")
    return FORMATS[name]


@dataclass(frozen=True)
class Op:
    """An operation: its reference (the spec) and a kernel factory per ISA path.

    ``dispatch_ops`` names the ops of ``tmac.kernels.dispatch.OP_PATHS`` whose paths this op
    runs on. ``takes_tables``: the implementation is ``(qw, x, act_group_size, lut, threads)``
    (the LUT product); otherwise ``(qw, x, threads)``. It applies to the weights of the formats
    that list it (``Format.ops``) whose codes have at most ``max_bits`` bits.
    """

    name: str
    reference: Callable
    kernel: Callable            # isa (str or None) -> implementation
    dispatch_ops: tuple
    summary: str = ""
    takes_tables: bool = False
    max_bits: int = 8           # widest codes it takes (a nibble kernel: 4)

    @property
    def kernel_backends(self):
        """ISA paths this CPU can run for this op, best first (imports llvmlite, compiles nothing)."""
        from tmac.kernels import dispatch

        have = dispatch.available()
        paths = {p for op in self.dispatch_ops for p in dispatch.OP_PATHS[op]}
        return tuple(isa for isa in dispatch.ISAS if isa in have and isa in paths)

    @property
    def backends(self):
        """"reference" first, then every kernel backend this CPU has."""
        return ("reference", *self.kernel_backends)

    def implementation(self, backend):
        """The callable for "reference", "auto" (best kernel path) or an ISA path name."""
        if backend == "reference":
            return self.reference
        return self.kernel(None if backend == "auto" else backend)


def declare_op(op: Op) -> Op:
    """Add ``op`` to the registry (``tmac.registry.OPS``)."""
    if op.name in DECLARED_OPS:
        raise ValueError(f"op {op.name!r} is declared twice")
    DECLARED_OPS[op.name] = op
    return op


class Format:
    """One weight format. Subclasses set the class attributes and override what differs.

    A QuantizedWeight of any format carries ``codes`` (M, K) uint8, ``scales`` and ``zeros``
    (M, K // group_size) float32 and, where the format has them, native ``params``. Formats
    with a LUT path give scales/zeros the contract's meaning, w = (code - zero) * scale
    (docs/numerics.md), so one lookup kernel serves them all.
    """

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    widths: ClassVar[tuple] = ()           # code widths ``bits`` may take
    fits: ClassVar[tuple] = ()             # fitting methods ``tmac.quantize(fit=...)`` takes, the
                                           # default first; (): one method, not selectable
    ops: ClassVar[tuple] = ()              # registry ops that accept this format
    matmul_op: ClassVar[str] = "lut_matmul"          # what tmac.matmul runs
    dequant_op: ClassVar[str] = "dequant_matmul"     # what tmac.dequant_matmul runs
    param_names: ClassVar[tuple] = ()      # native parameter arrays carried in qw.params
    stores_zeros: ClassVar[bool] = True    # zeros vary per group (count them in nbytes)
    grouped: ClassVar[bool] = True         # takes a group size (False: one scale per tensor)
    form: ClassVar[str] = "zero_point"     # its LUT epilogue and parameter storage (tmac.layout)
    requantizes: ClassVar[bool] = True     # a model format that requantizes weights into it
    k_multiple: ClassVar[int] = 1          # K must be a multiple of this (a block type's block)
    golden_tensors: ClassVar[dict] = {}    # the format's own golden stage tensors: name -> meaning
    golden_skips: ClassVar[tuple] = ()     # shared golden tensors its form does not have

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.name:
            if cls.name in FORMATS:
                raise ValueError(f"format {cls.name!r} is declared twice")
            FORMATS[cls.name] = cls()

    def __repr__(self):
        return f"<format {self.name}>"

    @property
    def has_lut_path(self) -> bool:
        """Whether ``tmac.matmul`` runs the table-lookup product on this format."""
        return self.matmul_op == "lut_matmul"

    # ---- quantize ------------------------------------------------------------------------

    def resolve(self, bits, group_size, k):
        """Validated (bits, group_size) for a K-column matrix; errors name the argument."""
        from tmac import validation

        if bits is None:                    # the format's default width
            bits = 4 if 4 in self.widths else self.widths[-1]
        bits = validation.integer("bits", bits)
        if bits not in self.widths:
            raise ValueError(self.bits_error(bits))
        return bits, validation.resolve_group_size(group_size, k)

    def bits_error(self, bits):
        return f"bits must be {_spoken(self.widths)} for scheme {self.name!r}, got {bits}"

    def resolve_fit(self, fit):
        """Validated fitting method: one of ``fits`` (None: the first), or None for a format
        with one method (then ``fit`` must be None)."""
        if fit is None:
            return self.fits[0] if self.fits else None
        if not self.fits:
            raise ValueError(f"fit does not apply to scheme {self.name!r} (it has one fitting "
                             f"method); got {fit!r}")
        if not isinstance(fit, str) or fit not in self.fits:
            raise ValueError(f"fit must be one of {', '.join(map(repr, self.fits))} for scheme "
                             f"{self.name!r}; got {fit!r}")
        return fit

    def quantize(self, w, bits, group_size):
        """w (M, K) float32, validated -> QuantizedWeight (the reference fit). A format with
        ``fits`` takes a keyword ``fit`` too, one of them."""
        raise NotImplementedError

    def dequantize(self, qw) -> np.ndarray:
        """The float32 (M, K) weights by the format's own definition."""
        from tmac.reference.quantize import dequantize

        return dequantize(qw.codes, qw.scales, qw.zeros)

    def lut_reference(self, qw, x, act_group_size, lut):
        """The LUT product by the specification (the reference of op ``lut_matmul``)."""
        from tmac.reference.lut_matmul import lut_matmul

        return lut_matmul(qw.codes, qw.scales, qw.zeros, qw.bits, x, act_group_size, lut)

    def block_values(self, lut, xsum, scales, zeros, bits, blocks):
        """What each block adds to y (N, M, nblocks), by the specification of this format's
        epilogue form; y is their sum from 0.0 in block order."""
        from tmac.reference.lut_matmul import block_values

        return block_values(lut, xsum, scales, zeros, bits, blocks)

    def dequant_reference(self, qw, x):
        """Dequantize-then-multiply by the specification (the reference of op ``dequant_matmul``)."""
        from tmac.reference.dequant_matmul import dequant_matmul

        return dequant_matmul(qw.codes, qw.scales, qw.zeros, x)

    def check_params(self, qw):
        """Validated native params (a tuple of read-only arrays shaped like scales) or None."""
        if not self.param_names:
            if qw.params is not None:
                raise ValueError(f"params must be None for scheme {self.name!r}")
            return None
        names = ", ".join(self.param_names)
        if not (isinstance(qw.params, tuple) and len(qw.params) == len(self.param_names)):
            raise TypeError(f"params must be the tuple ({names}) for scheme {self.name!r}")
        for name, p in zip(self.param_names, qw.params):
            if not isinstance(p, np.ndarray) or p.dtype != np.float32 or p.shape != qw.scales.shape:
                raise TypeError(f"params {name} must be a float32 array of shape {qw.scales.shape}")
            if not np.isfinite(p).all():
                raise ValueError(f"params {name} must be finite")
        return qw.params

    def stack(self, parts):
        """Weights of this format with equal K, bits and group size -> one with their rows
        stacked (each part keeps exactly its own codes and parameters)."""
        first = parts[0]
        params = None
        if first.params is not None:
            params = tuple(np.vstack([p.params[i] for p in parts]) for i in range(len(first.params)))
        return type(first)(np.vstack([p.codes for p in parts]),
                               np.vstack([p.scales for p in parts]),
                               np.vstack([p.zeros for p in parts]), first.bits, first.group_size,
                               first.scheme, params=params)

    def nbytes(self, qw) -> int:
        """What the weight holds: the kernel layout (codes at b bits, parameters in their
        storage dtype, rows padded to 64) where it has one, else bit-packed codes, float32
        scales and the zeros where they vary; plus native parameters."""
        extra = sum(p.nbytes for p in qw.params) if qw.params is not None else 0
        if qw.packed is not None and qw.packed.scales_t is not None:
            return qw.packed.nbytes + extra
        m, k = qw.shape
        code_bytes = -(-m * k * qw.bits // 8)
        return code_bytes + qw.scales.nbytes + (qw.zeros.nbytes if self.stores_zeros else 0) + extra

    def label(self, bits, group_size, k=None) -> str:
        """Short display name, e.g. ``asym 4-bit g64``."""
        group = "row" if group_size is None or group_size == k else f"g{group_size}"
        return f"{self.name} {bits}-bit {group}"

    # ---- benchmarks and tests ------------------------------------------------------------

    def random(self, m, k, bits, group_size, rng):
        """A QuantizedWeight with random codes and parameters, cheaply (no fitting): what the
        benchmarks time. Codes and parameters are valid for the format."""
        raise NotImplementedError

    # ---- golden export -------------------------------------------------------------------

    def golden_stages(self, params, w, x):
        """(this format's quantizer stages {tensor: array}, (codes, scales, zeros, bits) for the
        lookup path or None). A stage named ``check.<tensor>`` is not stored: the reference
        module's own result, which must equal the registry op's output bit for bit."""
        raise NotImplementedError

    def golden_weight(self, params, tensors):
        """The QuantizedWeight of a golden case, from its stage tensors."""
        raise NotImplementedError

    def golden_epilogue(self, codes, scales, zeros, bits, lut_values, xsum, blocks):
        """The golden stages after the lookups (zero-point form): dequantized weights, offsets,
        block values, and ``check.y`` (the reference epilogue's output)."""
        from tmac.reference import lut_matmul, quantize

        offsets = np.float32((2**bits - 1) / 2) - zeros
        block = lut_values + offsets[None, :, blocks.weight_group] * xsum[:, None, :]
        return {"dequantize.w": quantize.dequantize(codes, scales, zeros),
                "epilogue.offsets": offsets, "epilogue.block": block,
                "check.y": lut_matmul.epilogue(lut_values, xsum, scales, zeros, bits, blocks)}

    def golden_cases(self):
        """Case rows (see tmac.golden.cases) exported when no hand-written case uses this
        format: one small case per width, int8 tables (or none), two tokens."""
        lut = "int8" if self.has_lut_path else "none"
        act = 12 if self.has_lut_path else 12
        return [(f"{self.name}{b}_m5k36_g12_a{act}_{lut}_n2", self.name, b, 5, 36, 2, 12, act,
                 lut, "normal") for b in self.widths]


def _spoken(values):
    """(1, 2, 3, 4) -> "1, 2, 3 or 4"."""
    values = [str(v) for v in values]
    return values[0] if len(values) == 1 else ", ".join(values[:-1]) + " or " + values[-1]
