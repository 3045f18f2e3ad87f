"""How the golden files call each op of ``tmac.registry.OPS`` on each backend.

``OP_CALLS`` holds one entry per registry op: which cases it applies to, and how a case's
parameters become that op's arguments. A case holds the tensor ``output.<op>`` for every op
that applies to it; export computes it with the op's reference and verify recomputes it with
the reference and every kernel backend (ISA path) of this CPU. Export and verify iterate the
registry, so an op added there without an entry here is an error (``op_runner`` raises) rather
than an op the golden files silently skip.
"""
from __future__ import annotations

import numpy as np


def _has_lut_path(p):
    return p["lut"] != "none"


def _uniform_int(p):
    return p["scheme"] in ("asym", "sym", "ternary")


# op name -> (applies(params) -> bool, call(implementation, qw, x, params) -> y)
OP_CALLS = {
    "lut_matmul": (_has_lut_path, lambda run, qw, x, p: run(qw, x, p["act_group_size"], p["lut"])),
    "dequant_matmul": (_has_lut_path, lambda run, qw, x, p: run(qw, x)),
    # integer codes with scale and zero; for an M0E4 weight the kernel reads (a, b), not them
    "int4_dequant_matmul": (_uniform_int, lambda run, qw, x, p: run(qw, x)),
    "m0e4_dequant_matmul": (lambda p: p["scheme"] == "m0e4", lambda run, qw, x, p: run(qw, x)),
    "e2m1_dequant_matmul": (lambda p: p["scheme"] == "e2m1", lambda run, qw, x, p: run(qw, x)),
}


class MissingOpAdapter(KeyError):
    pass


def _entry(op_name):
    if op_name not in OP_CALLS:
        raise MissingOpAdapter(f"registry op {op_name!r} has no golden adapter in "
                               "tmac.golden.backends.OP_CALLS: add one so it is exported and verified")
    return OP_CALLS[op_name]


def applies(op_name, params) -> bool:
    """Whether a case holds (and verify recomputes) ``output.<op_name>``."""
    return bool(_entry(op_name)[0](params))


def ops_for(params) -> list:
    """The registry ops that apply to a case, in registry order."""
    from tmac.registry import OPS

    return [op for op in OPS if applies(op, params)]


def quantized_weight(params, tensors):
    """A tmac QuantizedWeight from a case's stage tensors (the quantizer's output)."""
    from tmac.formats import QuantizedWeight

    codes = np.ascontiguousarray(tensors["quantize.codes"], np.uint8)
    k = codes.shape[1]
    f32 = lambda name: np.ascontiguousarray(tensors[name], np.float32)   # noqa: E731
    if params["scheme"] == "e2m1":
        scales = f32("e2m1.scales")
        return QuantizedWeight(codes, scales, np.zeros_like(scales), 4, k // scales.shape[1], "e2m1")
    scales = f32("quantize.scales")
    extra = {"params": (f32("m0e4.a"), f32("m0e4.b"))} if params["scheme"] == "m0e4" else {}
    return QuantizedWeight(codes, scales, f32("quantize.zeros"), int(params["bits"]),
                           k // scales.shape[1], params["scheme"], **extra)


def op_runner(op_name, backend):
    """function(params, stage tensors, x) -> y running ``op_name`` on ``backend``
    ("reference" or an ISA path listed by ``OPS[op_name].backends``)."""
    from tmac.registry import OPS

    call = _entry(op_name)[1]
    implementation = OPS[op_name].implementation(backend)

    def run(params, tensors, x):
        qw = quantized_weight(params, tensors)
        return np.asarray(call(implementation, qw, np.ascontiguousarray(x, np.float32), params))
    return run


def kernel_backends(op_name, only=None):
    """The kernel backends (ISA paths) of an op on this CPU, optionally limited to ``only``."""
    from tmac.registry import OPS

    paths = [b for b in OPS[op_name].backends if b != "reference"]
    return [b for b in paths if only is None or b in only]
