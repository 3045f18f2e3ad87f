"""One registry of operations: each names its reference and its kernels.

The tests, ``tmac bench`` and the golden export all iterate over ``OPS``, so an operation or a
backend cannot exist in one of them and be missing from the others. The two operations every
format with a LUT path shares are declared here; a format that brings its own operation
declares it beside itself (``tmac.formats.base.declare_op``, e.g. the FP4 dequant ops).

Every implementation of an op takes the same arguments, already validated by ``tmac.api``:

    lut_matmul(qw, x, act_group_size, lut, threads) -> (N, M) float32   (Op.takes_tables)
    dequant_matmul(qw, x, threads)                  -> (N, M) float32
    m0e4_/int4_/e2m1_dequant_matmul(qw, x, threads) -> (N, M) float32   (tmac.formats.fp4)

with ``qw`` a QuantizedWeight and ``x`` an (N, K) C-contiguous float32 array.

Backends: "reference" (the numpy spec) and one kernel backend per ISA path of
``tmac.kernels.dispatch``, listed only where this CPU has it. Kernel modules load on first use,
so ``import tmac`` compiles and imports no Numba code.
"""

from tmac.formats import DECLARED_OPS, Op


def _reference_lut_matmul(qw, x, act_group_size, lut, threads=None):
    """The specification of the weight's format (its epilogue form: tmac.reference.lut_matmul
    or tmac.reference.affine)."""
    return qw.format.lut_reference(qw, x, act_group_size, lut)


def _reference_dequant_matmul(qw, x, threads=None):
    return qw.format.dequant_reference(qw, x)


def _kernel_lut_matmul(isa):
    """The LUT kernels on path ``isa`` (None: the best path for this CPU, or $TMAC_ISA)."""
    def run(qw, x, act_group_size, lut, threads=None):
        from tmac import kernels

        return kernels.lut_matmul(qw.packed, None, None, qw.bits, x, act_group_size, lut, isa=isa,
                                  threads=threads)
    return run


def _kernel_dequant_matmul(isa):
    def run(qw, x, threads=None):
        from tmac import kernels

        return kernels.dequant_matmul(qw.packed, None, None, qw.bits, x, isa=isa, threads=threads)
    return run


OPS = {
    "lut_matmul": Op("lut_matmul", _reference_lut_matmul, _kernel_lut_matmul,
                     ("lut_int8", "lut_float32"),
                     "y = x @ W.T by table lookup (T-MAC): tables, lookup, shift-accumulate",
                     takes_tables=True),
    "dequant_matmul": Op("dequant_matmul", _reference_dequant_matmul, _kernel_dequant_matmul,
                         ("dequant",),
                         "y = x @ W.T after dequantizing W to float32 (the baseline)"),
    **DECLARED_OPS,
}
