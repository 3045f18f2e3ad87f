"""The one way tmac compiles: ``njit``/``prange``/``intrinsic`` from here, cached on disk, never stale.

Numba keys a cached function by its own source file, yet its machine code also holds every
function it calls or inlines from other files (SIMD primitives, table build, model ops) and the
global constants it read. After an edit of one of those files, Numba would load the old machine
code. So every jitted module of tmac imports its decorators from here, and importing this module
installs a cache locator that stamps each cached function of the package with one digest over
**all jitted sources**: every tmac module that imports Numba, and every tmac module those import
(their globals can be baked into compiled code), transitively. Any edit of any of them changes
the stamp, Numba sees the stored index as stale and compiles afresh. The digest is computed once
per process, when the first jitted module is imported.

Functions outside the package keep Numba's own locators and stamps.

A first run compiles for tens of seconds; so that it is never a silent wait, the first compile
of a package function in a process (not a load from the disk cache) prints one line on stderr
(``TMAC_QUIET=1`` silences it).
"""
from __future__ import annotations

import functools
import hashlib
import os
import re
import sys
from pathlib import Path

from numba import njit, prange  # noqa: F401  (re-exported: the package's decorators)
from numba.core import caching, event
from numba.extending import intrinsic, overload  # noqa: F401

PACKAGE_DIR = Path(__file__).resolve().parent.parent          # .../tmac
PACKAGE = PACKAGE_DIR.name


@functools.lru_cache(maxsize=None)
def _module_file(dotted: str) -> Path | None:
    """The source file of package module ``dotted`` (tmac.x.y), or None if it is not a file of
    this package (a name imported from a module, or another package)."""
    parts = dotted.split(".")
    if parts[0] != PACKAGE:
        return None
    base = PACKAGE_DIR.joinpath(*parts[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


_IMPORT = re.compile(r"^(?:from[ \t]+(\.*[\w.]*)[ \t]+import[ \t]+(\([^)]*\)|[^\n]*)"
                     r"|import[ \t]+([^\n]*))", re.MULTILINE)


def _imports(path: Path, text: str) -> set:
    """Dotted names of the modules ``path`` (source ``text``) imports at module level (statements
    starting a line): where its globals, and so the constants and callees of its compiled code,
    come from. A plain scan, not a parse (5x faster); an import-like line inside a docstring
    only makes the stamp cover one file more."""
    package = ".".join((PACKAGE,) + path.relative_to(PACKAGE_DIR).parent.parts)
    names = set()
    for match in _IMPORT.finditer(text.replace("\\\n", " ")):
        source, imported, plain = match.groups()
        if plain is not None:                                  # import a.b as c, d
            names.update(part.split()[0] for part in plain.split("#")[0].split(",") if part.strip())
            continue
        level = len(source) - len(source.lstrip("."))
        module = source.lstrip(".")
        if level:                                              # relative: from ..x import y
            base = package.rsplit(".", level - 1)[0] if level > 1 else package
            module = f"{base}.{module}" if module else base
        listed = ",".join(line.split("#")[0] for line in imported.strip("()").splitlines())
        for alias in listed.split(","):
            alias = alias.strip().split(" ")[0]
            if alias:                                          # a submodule, else a name of module
                submodule = f"{module}.{alias}"
                names.add(submodule if _module_file(submodule) else module)
    return names


def jitted_sources() -> list:
    """Every package file whose code can end up in compiled machine code, sorted: the modules
    that import Numba, and the package modules they import, transitively."""
    texts = {f: f.read_text(encoding="utf-8") for f in PACKAGE_DIR.rglob("*.py")}
    chosen = {f for f, text in texts.items() if "numba" in text or __name__ in text
              if any(n.split(".")[0] == "numba" or n == __name__ for n in _imports(f, text))}
    todo = list(chosen)
    while todo:
        f = todo.pop()
        for name in _imports(f, texts[f]):
            dependency = _module_file(name)
            if dependency is not None and dependency not in chosen:
                chosen.add(dependency)
                todo.append(dependency)
    return sorted(chosen)


@functools.lru_cache(maxsize=None)
def source_stamp() -> str:
    """sha256 over the relative path and bytes of every jitted source (once per process)."""
    digest = hashlib.sha256()
    for f in jitted_sources():
        digest.update(str(f.relative_to(PACKAGE_DIR)).encode() + b"\0" + f.read_bytes() + b"\0")
    return digest.hexdigest()


class PackageStampLocator(caching._CacheLocator):
    """Numba's own locator for a package function (same cache folder), with the package-wide
    source stamp instead of the function's file alone."""

    def __init__(self, inner):
        self._inner = inner

    def ensure_cache_path(self):
        self._inner.ensure_cache_path()

    def get_cache_path(self):
        return self._inner.get_cache_path()

    def get_source_stamp(self):
        return (self._inner.get_source_stamp(), source_stamp())

    def get_disambiguator(self):
        return self._inner.get_disambiguator()

    @classmethod
    def from_function(cls, py_func, py_file):
        try:
            Path(py_file).resolve().relative_to(PACKAGE_DIR)
        except ValueError:
            return None                                 # not ours: Numba's locators decide
        for locator_class in caching.CacheImpl._locator_classes:
            if locator_class is not cls:
                inner = locator_class.from_function(py_func, py_file)
                if inner is not None:
                    return cls(inner)
        return None


class CompileNotice(event.Listener):
    """Says once per process, on stderr, that kernels are being compiled: Numba sends
    "numba:compile" only on a cache miss, so a warm cache prints nothing."""

    said = False

    def on_start(self, ev):
        if CompileNotice.said or os.environ.get("TMAC_QUIET"):
            return
        module = getattr(getattr(ev.data.get("dispatcher"), "py_func", None), "__module__", "")
        if module.split(".")[0] != PACKAGE:
            return
        CompileNotice.said = True
        from tmac.kernels.dispatch import available

        print(f"tmac: compiling kernels for this CPU ({available()[0]}); first run only, "
              f"up to a minute, cached afterwards", file=sys.stderr, flush=True)

    def on_end(self, ev):
        pass


def install():
    """Put the package locator first in Numba's list and listen for compiles (idempotent)."""
    classes = caching.CacheImpl._locator_classes
    if PackageStampLocator not in classes:
        classes.insert(0, PackageStampLocator)
        event.register("numba:compile", CompileNotice())


install()
