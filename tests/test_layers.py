"""The layers hold: no import cycles, and the specification runs where Numba cannot be imported.
(The layer order itself is the import-linter contract in pyproject.toml, checked by .ci/run.)"""

import subprocess
import sys

import grimp


def _cycles(graph):
    """Strongly connected groups of more than one module (Tarjan), over direct imports."""
    modules = sorted(graph.modules)
    edges = {m: set(graph.find_modules_directly_imported_by(m)) & set(modules) for m in modules}
    index, low, stack, on_stack, groups = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for m in modules:
        if m not in index:
            visit(m)
    return groups


def test_no_import_cycles():
    assert _cycles(grimp.build_graph("tmac")) == []


BLOCKED = """
import sys
sys.modules["numba"] = None          # import numba -> ImportError, as on a machine without it
sys.modules["llvmlite"] = None
import numpy as np, tmac
for scheme, fmt in tmac.formats.FORMATS.items():
    k = max(16, fmt.k_multiple)
    w = np.random.default_rng(0).standard_normal((8, k)).astype(np.float32)
    x = np.random.default_rng(1).standard_normal(k).astype(np.float32)
    qw = tmac.quantize(w, bits=fmt.widths[-1], group_size=8 if fmt.k_multiple == 1 else None,
                       scheme=scheme)
    y = tmac.matmul(qw, x, backend="reference")
    tmac.dequant_matmul(qw, x, backend="reference")
    assert np.float32(tmac.explain(qw, x, 3).value) == y[3]
print("ok", sorted(m for m in sys.modules if m.startswith(("numba", "llvmlite")) and sys.modules[m]))
"""


def test_reference_backend_runs_without_numba():
    done = subprocess.run([sys.executable, "-c", BLOCKED], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["ok", "[]"]
