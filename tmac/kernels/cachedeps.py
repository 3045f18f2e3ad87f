"""Drop Numba's on-disk cache of a kernel module when a module it calls into has changed.

Numba keys a cached function by its own source file only, but the machine code also contains
every function it calls or inlines from other files (SIMD primitives, table build). After an
edit of those files the cached code would be stale (wrong results or a crash), so each kernel
module that calls across files stamps its callees' sources next to its cache and drops the
cache when the stamp differs.
"""
from __future__ import annotations

import hashlib
from pathlib import Path


def drop_stale_cache(dispatcher, module_file: str, dependencies) -> None:
    """Remove ``module_file``'s cached compilations if any file in ``dependencies`` changed.

    ``dispatcher`` is any cache=True function of that module (gives the cache folder)."""
    try:
        folder = Path(dispatcher._cache._cache_path)
        stem = Path(module_file).stem
        digest = hashlib.sha256()
        for f in sorted(Path(d) for d in dependencies):
            digest.update(f.read_bytes())
        stamp = digest.hexdigest()
        stamp_file = folder / (stem + ".deps")
        if stamp_file.is_file() and stamp_file.read_text() == stamp:
            return
        for f in folder.glob(stem + ".*.nb[ic]"):
            f.unlink(missing_ok=True)
        folder.mkdir(parents=True, exist_ok=True)
        stamp_file.write_text(stamp)
    except (OSError, AttributeError):   # read-only install or no cache: nothing can go stale
        pass
