"""``tmac demo``: quantize one random matrix at every bit width, multiply, and show the trade-off.

A display, not a test: error against the float product and time against numpy's float32 GEMV.
"""

import numpy as np

import tmac
from tmac.metrics import nmse
from tmac.timing import median_seconds

FORMATS = [("4-bit asym", 4, "asym"), ("3-bit asym", 3, "asym"), ("2-bit asym", 2, "asym"),
           ("1-bit asym", 1, "asym"), ("ternary", 2, "ternary")]


def run_demo(m=4096, k=4096, group_size=128, backend="auto", repeats=5, seed=0):
    """Print a rich table; returns 0. Weights are Gaussian, activations Gaussian, both float32."""
    from rich.console import Console
    from rich.table import Table

    rng = np.random.default_rng(seed)
    w = rng.standard_normal((m, k), dtype=np.float32)
    x = rng.standard_normal(k, dtype=np.float32)
    exact = w.astype(np.float64) @ x.astype(np.float64)
    numpy_seconds = median_seconds(lambda: w @ x, repeats)

    table = Table(title=f"tmac demo: {m} x {k} GEMV, group size {group_size}, backend {backend}")
    for column in ("format", "bits/weight", "weight NMSE", "output NMSE vs float",
                   "LUT vs dequantized", "time (ms)", "time / numpy fp32"):
        table.add_column(column, justify="right")
    table.add_row("numpy float32", "32", "0", f"{nmse(w @ x, exact):.1e}", "-",
                  f"{numpy_seconds * 1e3:.2f}", "1.00")
    for name, bits, scheme in FORMATS:
        qw = tmac.quantize(w, bits=bits, group_size=group_size, scheme=scheme)
        y = tmac.matmul(qw, x, backend=backend)
        seconds = median_seconds(lambda: tmac.matmul(qw, x, backend=backend), repeats)
        dense = qw.dequantize()
        table.add_row(name, f"{qw.bits_per_weight:.2f}", f"{nmse(dense, w):.1e}",
                      f"{nmse(y, exact):.1e}", f"{nmse(y, dense.astype(np.float64) @ x):.1e}",
                      f"{seconds * 1e3:.2f}", f"{seconds / numpy_seconds:.2f}")
    Console().print(table)
    return 0
