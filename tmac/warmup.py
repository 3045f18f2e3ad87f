"""``tmac warmup``: compile (or load from Numba's on-disk cache) every kernel this CPU will run,
so that the first real call is fast. Each part runs tiny inputs through the public entry points."""

import importlib.util
import tempfile
from pathlib import Path

import numpy as np

PARTS = ("kernels", "fp4", "model")


def warm_kernels(isa=None):
    """The LUT (int8 and float32 tables) and dequant kernels: {op: ISA path}."""
    from tmac import kernels

    return kernels.warmup(isa)


def warm_fp4():
    """The FP4 dequant kernels (M0E4 bit trick, int4, E2M1) and M0E4 through the LUT path."""
    import tmac
    from tmac.registry import OPS

    rng = np.random.default_rng(0)
    w = rng.standard_normal((70, 64)).astype(np.float32)
    x = rng.standard_normal((2, 64)).astype(np.float32)
    done = {}
    for scheme in ("m0e4", "e2m1"):
        qw = tmac.quantize(w, bits=4, group_size=32, scheme=scheme)
        tmac.matmul(qw, x)
        tmac.dequant_matmul(qw, x)
        done[f"{scheme}_dequant_matmul"] = OPS[f"{scheme}_dequant_matmul"].backends[-1]
    qw = tmac.quantize(w, bits=4, group_size=32)
    OPS["int4_dequant_matmul"].implementation("auto")(qw, x)
    done["int4_dequant_matmul"] = OPS["int4_dequant_matmul"].backends[-1]
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
    if "fp4" in parts:
        done.update(warm_fp4())
    if "model" in parts:
        done.update(warm_model())
    return done
