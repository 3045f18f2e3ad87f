"""How the golden files call each op of ``tmac.registry.OPS`` on each backend.

``OP_CALLS`` holds one adapter per registry op: it turns a case's parameters into that op's
arguments. Export and verify both iterate the registry, so an op added there without an entry
here is an error (``op_runner`` raises) rather than an op the golden files silently skip.
"""
from __future__ import annotations

import numpy as np

# op name -> function(implementation, qw, x, params) -> (N, M) float32
OP_CALLS = {
    "lut_matmul": lambda run, qw, x, p: run(qw, x, p["act_group_size"], p["lut"]),
    "dequant_matmul": lambda run, qw, x, p: run(qw, x),
}


class MissingOpAdapter(KeyError):
    pass


def quantized_weight(params, parts):
    """A tmac QuantizedWeight from a case's (codes, scales, zeros, bits)."""
    from tmac.formats import QuantizedWeight

    codes, scales, zeros, bits = parts
    k = codes.shape[1]
    return QuantizedWeight(np.ascontiguousarray(codes, np.uint8),
                           np.ascontiguousarray(scales, np.float32),
                           np.ascontiguousarray(zeros, np.float32),
                           int(bits), k // scales.shape[1], params["scheme"])


def op_runner(op_name, backend):
    """function(params, (codes, scales, zeros, bits), x) -> y running ``op_name`` on ``backend``
    ("reference" or an ISA path listed by ``OPS[op_name].backends``)."""
    from tmac.registry import OPS

    if op_name not in OP_CALLS:
        raise MissingOpAdapter(f"registry op {op_name!r} has no golden adapter in "
                               "tmac.golden.backends.OP_CALLS: add one so it is exported and verified")
    implementation = OPS[op_name].implementation(backend)

    def run(params, parts, x):
        qw = quantized_weight(params, parts)
        return np.asarray(OP_CALLS[op_name](implementation, qw,
                                            np.ascontiguousarray(x, np.float32), params))
    return run


def kernel_backends(op_name, only=None):
    """The kernel backends (ISA paths) of an op on this CPU, optionally limited to ``only``."""
    from tmac.registry import OPS

    paths = [b for b in OPS[op_name].backends if b != "reference"]
    return [b for b in paths if only is None or b in only]
