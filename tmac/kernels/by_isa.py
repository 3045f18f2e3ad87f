"""An ISA path chosen inside compiled code, by type: ``lut_int8_on(tag, ...)``.

Compiled code that calls a LUT kernel (the fused model path) cannot take the kernel as an
argument: Numba keys a function argument by its memory address, so its machine code would be
compiled again in every process instead of loaded from the disk cache. So the caller carries a
*tag*, an empty array whose dtype names the path (``tag(isa)``), and ``lut_int8_on`` resolves to
that path's ``lut_int8`` while it is typed: one specialization per path, cached like any other,
and only the chosen path's kernel is compiled (an AVX-512 kernel is never compiled on a CPU
without AVX-512). The paths and their order are tmac.kernels.dispatch.PATHS.
"""
from __future__ import annotations

import importlib

import numpy as np
from numba.np.numpy_support import as_dtype

from tmac.kernels.dispatch import ISAS, PATHS
from tmac.kernels.jit import overload

TAG_DTYPES = (np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16)   # one per path


def tag(isa: str) -> np.ndarray:
    """The empty array that stands for path ``isa`` in compiled code."""
    return np.zeros(0, TAG_DTYPES[ISAS.index(isa)])


def _isa_of(tag_type) -> str:
    """The path a tag's Numba array type names."""
    return ISAS[[np.dtype(d) for d in TAG_DTYPES].index(as_dtype(tag_type.dtype))]


def lut_int8_on(isa_tag, data, tables, blocks, half, xsum, sc, off, out, tiles_per_task):
    """The int8 LUT kernel of the path ``isa_tag`` names (arguments as
    tmac.kernels.portable.lut_int8). Callable from compiled code only."""
    raise TypeError("lut_int8_on is called from compiled code only")


@overload(lut_int8_on, jit_options={"cache": True})
def _lut_int8_on(isa_tag, data, tables, blocks, half, xsum, sc, off, out, tiles_per_task):
    path = PATHS[ISAS.index(_isa_of(isa_tag))]
    kernel = importlib.import_module(path.module).lut_int8

    def run(isa_tag, data, tables, blocks, half, xsum, sc, off, out, tiles_per_task):
        kernel(data, tables, blocks, half, xsum, sc, off, out, tiles_per_task)

    return run
