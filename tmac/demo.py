"""``tmac demo``: quantize one random matrix at every bit width, multiply, and show the trade-off.

A display, not a test: error against the float product and time against numpy's float32 GEMV.
"""

from dataclasses import dataclass

import numpy as np

import tmac
from tmac import validation
from tmac.metrics import nmse
from tmac.timing import median_seconds

FORMATS = [("4-bit asym", 4, "asym"), ("3-bit asym", 3, "asym"), ("2-bit asym", 2, "asym"),
           ("1-bit asym", 1, "asym"), ("ternary", 2, "ternary")]


@dataclass(frozen=True)
class DemoRow:
    """One format's results. NMSEs: weights vs float, output vs the float product, and the
    LUT output vs the dequantized product (the error of table quantization alone)."""

    name: str
    bits_per_weight: float
    weight_nmse: float
    output_nmse: float
    lut_nmse: float
    seconds: float


def demo_rows(m=4096, k=4096, group_size=128, backend="auto", repeats=5, seed=0, threads=1):
    """Numpy's float32 GEMV time and one DemoRow per format, on Gaussian weights and activations.

    Both sides run on ``threads`` threads (numpy's BLAS is limited to the same count), so the
    times compare like with like."""
    from tmac.bench import set_blas_threads

    for name, value in (("m", m), ("k", k), ("repeats", repeats), ("threads", threads)):
        if validation.integer(name, value) < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((m, k), dtype=np.float32)
    x = rng.standard_normal(k, dtype=np.float32)
    exact = w.astype(np.float64) @ x.astype(np.float64)
    set_blas_threads(threads)
    numpy_seconds = median_seconds(lambda: w @ x, repeats)
    rows = []
    for name, bits, scheme in FORMATS:
        qw = tmac.quantize(w, bits=bits, group_size=group_size, scheme=scheme)
        y = tmac.matmul(qw, x, backend=backend, threads=threads)
        seconds = median_seconds(lambda: tmac.matmul(qw, x, backend=backend, threads=threads),
                                 repeats)
        dense = qw.dequantize()
        rows.append(DemoRow(name, qw.bits_per_weight, nmse(dense, w), nmse(y, exact),
                            nmse(y, dense.astype(np.float64) @ x), seconds))
    return numpy_seconds, rows


def run_demo(m=4096, k=4096, group_size=128, backend="auto", repeats=5, seed=0, threads=1):
    """Print the demo table (rich); returns 0."""
    from rich.console import Console
    from rich.table import Table

    numpy_seconds, rows = demo_rows(m, k, group_size, backend, repeats, seed, threads)
    table = Table(title=f"tmac demo: {m} x {k} GEMV, group size {group_size}, backend {backend}, "
                        f"{threads} thread(s)")
    for column in ("format", "bits/weight", "weight NMSE", "output NMSE vs float",
                   "LUT vs dequantized", "time (ms)", "time / numpy fp32"):
        table.add_column(column, justify="right", no_wrap=column == "format")
    table.add_row("numpy float32", "32", "0", "-", "-", f"{numpy_seconds * 1e3:.2f}", "1.00")
    for r in rows:
        table.add_row(r.name, f"{r.bits_per_weight:.2f}", f"{r.weight_nmse:.1e}",
                      f"{r.output_nmse:.1e}", f"{r.lut_nmse:.1e}", f"{r.seconds * 1e3:.2f}",
                      f"{r.seconds / numpy_seconds:.2f}")
    Console().print(table)
    return 0
