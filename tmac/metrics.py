"""Error measures used by the demo, the benchmarks and the accuracy tests."""

import numpy as np


def nmse(approx, exact):
    """Normalized mean squared error sum((a - e)^2) / sum(e^2), computed in float64."""
    approx = np.asarray(approx, dtype=np.float64)
    exact = np.asarray(exact, dtype=np.float64)
    return float(((approx - exact) ** 2).sum() / (exact**2).sum())
