"""``tmac warmup``: compile (or load from Numba's on-disk cache) every kernel this CPU will run,
so that the first real call is fast. Each part runs tiny inputs through the public entry points."""

import importlib.util
import tempfile
from pathlib import Path

import numpy as np

PARTS = ("kernels", "formats", "model")


def warm_kernels(isa=None):
    """The LUT (int8 and float32 tables) and dequant kernels: {op: ISA path}."""
    from tmac import kernels

    return kernels.warmup(isa)


def warm_formats():
    """Every op of every format in the format table, on a small weight of that format (the FP4
    dequant kernels, M0E4 through the LUT path, ...): {op: path}."""
    import tmac
    from tmac.formats import FORMATS
    from tmac.registry import OPS

    rng = np.random.default_rng(0)
    done = {}
    for fmt in FORMATS.values():
        k = max(64, fmt.k_multiple)
        x = rng.standard_normal((2, k)).astype(np.float32)
        qw = fmt.random(70, k, min(fmt.widths[-1], 4) if len(fmt.widths) > 1 else None, 32, rng)
        tmac.matmul(qw, x)
        tmac.dequant_matmul(qw, x)
        for op in fmt.ops:
            if not OPS[op].takes_tables:
                OPS[op].implementation("auto")(qw, x)
            done[op] = OPS[op].kernel_backends[0]
    return done


def warm_model():
    """The model runtime's Numba ops (prefill and decode) on a tiny random llama; needs the
    ``model`` extra, else it is skipped."""
    if importlib.util.find_spec("gguf") is None:
        return {"model": "skipped (the 'model' extra is not installed)"}
    from tmac.model import formats, loader, runtime, tiny

    with tempfile.TemporaryDirectory() as tmp:
        weights = loader.load(tiny.write_tiny_llama(Path(tmp) / "tiny.gguf")).weights
    model = runtime.prepare(weights, formats.parse("w4", group_size=32))
    rt = runtime.Runtime(model, max_ctx=16, max_seq=8)
    rt.forward([1, 2, 3])
    rt.forward([4])
    return {"model": "fused" if rt.fused else "per-layer"}


def warmup(parts=PARTS, isa=None):
    """Warm the requested parts; returns {what: path or note}."""
    done = {}
    if "kernels" in parts:
        done.update(warm_kernels(isa))
    if "formats" in parts:
        done.update(warm_formats())
    if "model" in parts:
        done.update(warm_model())
    return done
