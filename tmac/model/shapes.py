"""Symbolic shapes and a memory plan made once for every length (Transformer-Lite §3).

Dynamic dimensions are symbols (``batch``, ``seq_len``, ``past_len``, ``out_len``); every
intermediate tensor's shape is an expression of them, e.g. attention scores are
``(batch * n_heads, seq_len, past_len + seq_len)``. From the shapes and the order in which steps
write and read tensors, ``plan`` derives, once:

* each tensor's size at the largest values of the symbols (expressions here are polynomials
  with non-negative coefficients, so they grow with every symbol);
* its lifetime: from the step that first writes it to the step that last reads it;
* an offset in one arena, chosen so that tensors whose lifetimes overlap never overlap in
  memory, while those that do not may share it (greedy: largest first, lowest free offset).

At run time ``MemoryPlan.views(seq_len=.., past_len=..)`` resolves every shape for the actual
lengths and returns numpy views into the arena: no allocation per step, any length up to the
maximum served by the same plan.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

ALIGN = 64       # bytes; one cache line / one 512-bit register


class Expr:
    """An integer polynomial in symbols: {monomial (sorted tuple of names): coefficient}."""

    __slots__ = ("terms",)

    def __init__(self, terms):
        self.terms = {m: c for m, c in terms.items() if c != 0}

    @staticmethod
    def lift(value) -> "Expr":
        if isinstance(value, Expr):
            return value
        if isinstance(value, (int, np.integer)):
            return Expr({(): int(value)})
        raise TypeError(f"cannot use {value!r} in a shape expression")

    def __add__(self, other):
        other, terms = Expr.lift(other), dict(self.terms)
        for m, c in other.terms.items():
            terms[m] = terms.get(m, 0) + c
        return Expr(terms)

    __radd__ = __add__

    def __mul__(self, other):
        other, terms = Expr.lift(other), {}
        for m1, c1 in self.terms.items():
            for m2, c2 in other.terms.items():
                m = tuple(sorted(m1 + m2))
                terms[m] = terms.get(m, 0) + c1 * c2
        return Expr(terms)

    __rmul__ = __mul__

    @property
    def symbols(self):
        return sorted({s for m in self.terms for s in m})

    def __call__(self, env: Mapping[str, int]) -> int:
        """The value for symbol values ``env`` (every symbol used must be given)."""
        total = 0
        for m, c in self.terms.items():
            v = c
            for s in m:
                v *= int(env[s])
            total += v
        return total

    def __eq__(self, other):
        return isinstance(other, (Expr, int)) and self.terms == Expr.lift(other).terms

    def __hash__(self):
        return hash(tuple(sorted(self.terms.items())))

    def __repr__(self):
        if not self.terms:
            return "0"
        parts = []
        for m, c in sorted(self.terms.items(), key=lambda mc: (-len(mc[0]), mc[0])):
            factors = ([str(c)] if c != 1 or not m else []) + list(m)
            parts.append("*".join(factors))
        return " + ".join(parts)


def sym(name: str) -> Expr:
    return Expr({(name,): 1})


def resolve(shape, env) -> tuple:
    """A shape of expressions/ints -> a tuple of ints."""
    return tuple(Expr.lift(d)(env) for d in shape)


@dataclass(frozen=True)
class Tensor:
    name: str
    shape: tuple              # of Expr or int
    dtype: str = "float32"

    def nbytes(self, env) -> int:
        return int(np.prod(resolve(self.shape, env), dtype=np.int64)) * np.dtype(self.dtype).itemsize

    def __repr__(self):
        return f"{self.name}: ({', '.join(map(repr, map(Expr.lift, self.shape)))}) {self.dtype}"


@dataclass(frozen=True)
class Step:
    """One operation: the tensors it reads and writes (names); external tensors may appear."""
    name: str
    reads: tuple = ()
    writes: tuple = ()


class Graph:
    """Tensors with symbolic shapes and the steps that use them, in execution order."""

    def __init__(self):
        self.tensors: dict[str, Tensor] = {}
        self.steps: list[Step] = []

    def tensor(self, name, shape, dtype="float32") -> Tensor:
        if name in self.tensors:
            raise ValueError(f"tensor {name} defined twice")
        self.tensors[name] = Tensor(name, tuple(shape), dtype)
        return self.tensors[name]

    def step(self, name, reads=(), writes=()):
        self.steps.append(Step(name, tuple(reads), tuple(writes)))

    def lifetimes(self) -> dict:
        """name -> (first step index, last step index) for every planned tensor."""
        spans = {}
        for i, s in enumerate(self.steps):
            for name in s.reads + s.writes:
                if name in self.tensors:
                    first, _ = spans.get(name, (i, i))
                    spans[name] = (first, i)
        unused = set(self.tensors) - set(spans)
        if unused:
            raise ValueError(f"tensors never used by a step: {sorted(unused)}")
        return spans


@dataclass
class MemoryPlan:
    graph: Graph
    bounds: dict              # symbol -> maximum value planned for
    offsets: dict             # tensor name -> byte offset in the arena
    sizes: dict               # tensor name -> bytes at the maximum (aligned)
    lifetimes: dict
    arena_bytes: int

    @property
    def unshared_bytes(self) -> int:
        """What one buffer per tensor would take (the sum of all intermediates)."""
        return sum(self.sizes.values())

    def allocate(self) -> np.ndarray:
        """The arena: one aligned byte buffer for every planned tensor."""
        raw = np.zeros(self.arena_bytes + ALIGN, np.uint8)
        start = (-raw.ctypes.data) % ALIGN
        return raw[start:start + self.arena_bytes]

    def check(self, env):
        for s, v in env.items():
            if s in self.bounds and not 0 <= v <= self.bounds[s]:
                raise ValueError(f"{s}={v} is outside the planned range 0..{self.bounds[s]}")

    def views(self, arena, only=None, **env) -> dict:
        """Every tensor (or those named in ``only``) resolved for ``env`` (symbol values), as a
        view into ``arena``."""
        self.check(env)
        out = {}
        for name in self.graph.tensors if only is None else only:
            t = self.graph.tensors[name]
            shape = resolve(t.shape, env)
            n = int(np.prod(shape, dtype=np.int64)) * np.dtype(t.dtype).itemsize
            if n > self.sizes[name]:
                raise ValueError(f"{name} needs {n} bytes for {env}, planned {self.sizes[name]}")
            off = self.offsets[name]
            out[name] = arena[off:off + n].view(t.dtype).reshape(shape)
        return out

    def table(self):
        """Rows (name, shape expression, lifetime, offset, bytes at max) for display."""
        return [(n, repr(self.graph.tensors[n]).split(": ", 1)[1], self.lifetimes[n],
                 self.offsets[n], self.sizes[n]) for n in self.graph.tensors]


def _aligned(n):
    return -(-n // ALIGN) * ALIGN


def plan(graph: Graph, bounds: Mapping[str, int]) -> MemoryPlan:
    """Offsets for every tensor of ``graph``, sized for the symbol maxima ``bounds``."""
    spans = graph.lifetimes()
    sizes = {n: _aligned(t.nbytes(bounds)) for n, t in graph.tensors.items()}
    placed = []                                   # (offset, size, first, last)
    offsets = {}
    for name in sorted(graph.tensors, key=lambda n: (-sizes[n], spans[n])):
        first, last = spans[name]
        busy = sorted((o, o + s) for o, s, f, l in placed if not (l < first or last < f))
        offset = 0
        for lo, hi in busy:                        # lowest gap that fits
            if offset + sizes[name] <= lo:
                break
            offset = max(offset, hi)
        offsets[name] = offset
        placed.append((offset, sizes[name], first, last))
    arena = max((o + s for o, s, _, _ in placed), default=0)
    return MemoryPlan(graph, dict(bounds), offsets, sizes, spans, arena)
