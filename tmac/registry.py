"""One registry of operations: each names its reference and its kernels.

The tests, ``tmac bench`` and the golden export all iterate over ``OPS``, so an operation or a
backend cannot exist in one of them and be missing from the others.

Every implementation of an op takes the same arguments, already validated by ``tmac.api``:

    lut_matmul(qw, x, act_group_size, lut, threads) -> (N, M) float32
    dequant_matmul(qw, x, threads)                  -> (N, M) float32
    m0e4_/int4_/e2m1_dequant_matmul(qw, x, threads) -> (N, M) float32   (tmac.fp4)

with ``qw`` a QuantizedWeight and ``x`` an (N, K) C-contiguous float32 array.

Backends: "reference" (the numpy spec) and one kernel backend per ISA path of ``tmac.dispatch``
("avx512", "avx2", "portable"), listed only where this CPU has it. Kernel modules load on first
use, so ``import tmac`` compiles and imports no Numba code.
"""

from dataclasses import dataclass
from typing import Callable

from tmac import fp4 as _fp4
from tmac.reference import dequant_matmul as _ref_dequant
from tmac.reference import lut_matmul as _ref_lut


def _reference_lut_matmul(qw, x, act_group_size, lut, threads=None):
    return _ref_lut.lut_matmul(qw.codes, qw.scales, qw.zeros, qw.bits, x, act_group_size, lut)


def _reference_dequant_matmul(qw, x, threads=None):
    return _ref_dequant.dequant_matmul(qw.codes, qw.scales, qw.zeros, x)


def _kernel_lut_matmul(isa):
    """The LUT kernels on path ``isa`` (None: the best path for this CPU, or $TMAC_ISA)."""
    def run(qw, x, act_group_size, lut, threads=None):
        from tmac import kernels

        return kernels.lut_matmul(qw.packed, qw.scales, qw.zeros, qw.bits, x, act_group_size,
                                  lut, isa=isa, threads=threads)
    return run


def _kernel_dequant_matmul(isa):
    def run(qw, x, threads=None):
        from tmac import kernels

        return kernels.dequant_matmul(qw.packed, qw.scales, qw.zeros, qw.bits, x, isa=isa,
                                      threads=threads)
    return run


@dataclass(frozen=True)
class Op:
    """An operation: its reference (the spec) and a kernel factory per ISA path.

    ``dispatch_ops`` names the ops of ``tmac.dispatch.OP_PATHS`` whose paths this op runs on.
    """

    name: str
    reference: Callable
    kernel: Callable            # isa (str or None) -> implementation
    dispatch_ops: tuple
    summary: str = ""

    @property
    def kernel_backends(self):
        """ISA paths this CPU can run for this op, best first (imports llvmlite, compiles nothing)."""
        from tmac import dispatch

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


OPS = {
    "lut_matmul": Op("lut_matmul", _reference_lut_matmul, _kernel_lut_matmul,
                     ("lut_int8", "lut_float32"),
                     "y = x @ W.T by table lookup (T-MAC): tables, lookup, shift-accumulate"),
    "dequant_matmul": Op("dequant_matmul", _reference_dequant_matmul, _kernel_dequant_matmul,
                         ("dequant",),
                         "y = x @ W.T after dequantizing W to float32 (the baseline)"),
    # FP4 (tmac.fp4): same signature as dequant_matmul, portable Numba kernels in tmac.kernels.fp4
    "m0e4_dequant_matmul": Op("m0e4_dequant_matmul", _fp4.reference_m0e4, _fp4.kernel_m0e4,
                              ("dequant",),
                              "M0E4 weights: bit-trick dequantization (no int-to-float), then multiply"),
    "int4_dequant_matmul": Op("int4_dequant_matmul", _fp4.reference_int4, _fp4.kernel_int4,
                              ("dequant",),
                              "uniform codes < 16: the M0E4 kernel's loop with an int-to-float conversion"),
    "e2m1_dequant_matmul": Op("e2m1_dequant_matmul", _fp4.reference_e2m1, _fp4.kernel_e2m1,
                              ("dequant",),
                              "OCP E2M1 weights: table decode times scale, then multiply"),
}
