"""One registry of operations: each names its reference and its kernels.

The tests, ``tmac bench`` and the golden export all iterate over ``OPS``, so an operation or a
backend cannot exist in one of them and be missing from the others.

Every implementation of an op takes the same arguments, already validated by ``tmac.api``:

    lut_matmul(qw, x, act_group_size, lut, threads) -> (N, M) float32
    dequant_matmul(qw, x, threads)                  -> (N, M) float32

with ``qw`` a QuantizedWeight and ``x`` an (N, K) C-contiguous float32 array. Kernel modules
are imported on first use, so ``import tmac`` compiles and imports no Numba code.
"""

from dataclasses import dataclass, field
from typing import Callable

from tmac.reference import dequant_matmul as _ref_dequant
from tmac.reference import lut_matmul as _ref_lut


def _reference_lut_matmul(qw, x, act_group_size, lut, threads=None):
    return _ref_lut.lut_matmul(qw.codes, qw.scales, qw.zeros, qw.bits, x, act_group_size, lut)


def _reference_dequant_matmul(qw, x, threads=None):
    return _ref_dequant.dequant_matmul(qw.codes, qw.scales, qw.zeros, x)


@dataclass(frozen=True)
class Op:
    """An operation: its reference (the spec) and its kernels by backend name."""

    name: str
    reference: Callable
    kernels: dict = field(default_factory=dict)
    summary: str = ""

    @property
    def backends(self):
        """"reference" first, then every kernel backend."""
        return ("reference", *self.kernels)

    def implementation(self, backend):
        """The callable for ``backend`` ("reference" or a kernel name)."""
        if backend == "reference":
            return self.reference
        return self.kernels[backend]


OPS = {
    "lut_matmul": Op("lut_matmul", _reference_lut_matmul,
                     summary="y = x @ W.T by table lookup (T-MAC): tables, lookup, shift-accumulate"),
    "dequant_matmul": Op("dequant_matmul", _reference_dequant_matmul,
                         summary="y = x @ W.T after dequantizing W to float32 (the baseline)"),
}


def register_kernel(op_name, backend, function):
    """Add a kernel backend to an op (used by tmac.kernels when it is available)."""
    OPS[op_name].kernels[backend] = function
