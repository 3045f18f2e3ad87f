"""How the golden files call each op of ``tmac.registry.OPS`` on each backend.

A case holds the tensor ``output.<op>`` for every op its format accepts (``Format.ops``; the
lookup product only where the case has a table mode); export computes it with the op's
reference and verify recomputes it with the reference and every kernel backend (ISA path) of
this CPU. Both iterate the registry and the format table, so a new op or format is exported
and verified without an edit here.
"""
from __future__ import annotations

import numpy as np

from tmac.formats import FORMATS
from tmac.registry import OPS


def applies(op_name, params) -> bool:
    """Whether a case holds (and verify recomputes) ``output.<op_name>``."""
    if op_name not in OPS:
        raise KeyError(f"unknown registry op {op_name!r}")
    if OPS[op_name].takes_tables and params["lut"] == "none":
        return False
    return op_name in FORMATS[params["scheme"]].ops and params["bits"] <= OPS[op_name].max_bits


def ops_for(params) -> list:
    """The registry ops that apply to a case, in registry order."""
    return [op for op in OPS if applies(op, params)]


def quantized_weight(params, tensors):
    """A tmac QuantizedWeight from a case's stage tensors (the quantizer's output)."""
    return FORMATS[params["scheme"]].golden_weight(params, tensors)


def op_runner(op_name, backend):
    """function(params, stage tensors, x) -> y running ``op_name`` on ``backend``
    ("reference" or an ISA path listed by ``OPS[op_name].backends``)."""
    op = OPS[op_name]
    implementation = op.implementation(backend)

    def run(params, tensors, x):
        qw = quantized_weight(params, tensors)
        x = np.ascontiguousarray(x, np.float32)
        if op.takes_tables:
            return np.asarray(implementation(qw, x, params["act_group_size"], params["lut"]))
        return np.asarray(implementation(qw, x))
    return run


def kernel_backends(op_name, only=None):
    """The kernel backends (ISA paths) of an op on this CPU, optionally limited to ``only``."""
    paths = [b for b in OPS[op_name].backends if b != "reference"]
    return [b for b in paths if only is None or b in only]
