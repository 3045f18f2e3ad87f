"""What tmac keeps on disk, by kind, and the tools of ``tmac cache``: list, clear, and a size
limit for prepared models with least-recently-used eviction.

``<cache>`` is ``$TMAC_CACHE_DIR``, else ``$XDG_CACHE_HOME/tmac``, else ``~/.cache/tmac``
(``tmac.model.fetch.cache_dir``).

    kind      where                                  written by           cleared by
    prepared  <cache>/prepared/*.npz                 tmac.model.store     clear prepared; the limit
    calibration <cache>/calibration/*.npy            fit gptq (the model  clear calibration
                (token ids the model sampled)          samples its own)
    tune      <cache>/tune.json                      tmac tune            clear tune
    fetched   <cache>/<name>/ (GGUF, .verified.json) tmac fetch NAME      clear fetched --name NAME
    kernels   Numba's *.nbi, *.nbc of tmac's         a kernel's first     clear kernels
              functions: $NUMBA_CACHE_DIR if set,    call
              else __pycache__ beside the sources
              (Numba's user-wide cache if read-only)

Every kind is rebuilt on demand when missing; only fetched models cost a download, so they are
never deleted unless named, and never evicted.

The limit (``tmac cache limit 500MB``, kept in ``<cache>/config.json``; ``$TMAC_CACHE_LIMIT``
overrides it) bounds prepared models only. Opening a prepared model touches its files' mtime,
which is therefore the time of last use; after the store writes a new entry, the entries used
least recently are deleted until the folder fits (never the entry just written).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path

KINDS = ("prepared", "calibration", "tune", "fetched", "kernels")
CONFIG_NAME = "config.json"
LIMIT_ENV = "TMAC_CACHE_LIMIT"

# decimal units as disks and `tmac fetch` count them; the binary ones spelled with an i
_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9,
          "gb": 10**9, "t": 10**12, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
_NO_LIMIT = ("none", "off", "unlimited")


def parse_size(text: str) -> int:
    """"500MB", "1.5G", "2GiB", "1000" (bytes) -> bytes. Decimal units (MB = 10^6) unless the
    unit has an i (MiB = 2^20)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-zA-Z]*)\s*", str(text))
    unit = match and match.group(2).lower()
    if not match or unit not in _UNITS:
        raise ValueError(f"cannot read {text!r} as a size (e.g. 500MB, 2GB, 1.5GiB)")
    return int(float(match.group(1)) * _UNITS[unit])


def human_size(n: int) -> str:
    """Bytes in decimal units, three significant digits: 0 B, 812 B, 98.4 MB, 1.21 GB."""
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            break
        n /= 1000
    if unit == "B":
        return f"{int(n)} B"
    return f"{n:.3g} {unit}" if n < 100 else f"{n:.0f} {unit}"


@dataclass
class Entry:
    """One row of the listing: a kind (and for fetched models, the model's name), where it lives,
    and its files."""

    kind: str
    location: str
    files: list = field(default_factory=list)
    name: str = ""

    @property
    def size(self) -> int:
        return sum(_size(f) for f in self.files)

    @property
    def count(self) -> int:
        return len(self.files)

    def as_dict(self):
        return {"kind": self.kind, "name": self.name or None, "files": self.count,
                "bytes": self.size, "path": self.location}


def cache_dir() -> Path:
    from tmac.model.fetch import cache_dir

    return cache_dir()


def prepared_dir() -> Path:
    return cache_dir() / "prepared"


def prepared_files() -> list:
    """Every file of the prepared-model folder (entries and temporary files of writes cut short)."""
    folder = prepared_dir()
    return sorted(f for f in folder.iterdir() if f.is_file()) if folder.is_dir() else []


def calibration_files() -> list:
    """The cached calibration token ids (tmac.model.calibration) and cut-short writes."""
    folder = cache_dir() / "calibration"
    return sorted(f for f in folder.iterdir() if f.is_file()) if folder.is_dir() else []


def tune_files() -> list:
    """The tuning cache and any temporary file a cut-short save left beside it."""
    from tmac.kernels.tiles import cache_path

    path = Path(cache_path())
    found = [path] if path.is_file() else []
    if path.parent.is_dir():
        found += sorted(path.parent.glob(path.name + ".*.tmp"))
    return found


def fetched_entries() -> list:
    """One entry per known model: its folder (the GGUF, its verification record, and any
    partial download)."""
    from tmac.model import fetch

    out = []
    for name in fetch.MODELS:
        folder = fetch.cached_path(name).parent
        files = sorted(f for f in folder.rglob("*") if f.is_file()) if folder.is_dir() else []
        out.append(Entry("fetched", str(folder), files, name))
    return out


def kernel_dirs() -> list:
    """Every folder Numba keeps compiled code of tmac's functions in, by the locators Numba (and
    ``tmac.kernels.jit``) use: for each source folder of the package, its folder under
    ``$NUMBA_CACHE_DIR`` when that is set; else its ``__pycache__`` and, for read-only sources,
    its folder under Numba's user-wide cache."""
    from numba.core import config
    from numba.core.caching import _CacheLocator
    from numba.misc.appdirs import AppDirs

    import tmac

    package = Path(tmac.__file__).resolve().parent
    user_wide = Path(AppDirs(appname="numba", appauthor=False).user_cache_dir)
    dirs = set()
    for source_dir in {p.parent for p in package.rglob("*.py")}:
        subpath = _CacheLocator.get_suitable_cache_subpath(str(source_dir / "__init__.py"))
        if config.CACHE_DIR:
            dirs.add(Path(config.CACHE_DIR) / subpath)
        else:
            dirs.update((source_dir / "__pycache__", user_wide / subpath))
    return sorted(dirs)


def kernel_files() -> list:
    return sorted(f for d in kernel_dirs() if d.is_dir()
                  for pattern in ("*.nbi", "*.nbc") for f in d.glob(pattern))


def _kernels_location(files) -> str:
    from numba.core import config

    import tmac

    folders = sorted({str(f.parent) for f in files})
    if len(folders) == 1:
        return folders[0]
    where = (f"{config.CACHE_DIR} (NUMBA_CACHE_DIR)" if config.CACHE_DIR
             else str(Path(tmac.__file__).resolve().parent / "**" / "__pycache__"))
    return f"{where}, {len(folders)} folders" if folders else where


def entries() -> list:
    """The listing: prepared, calibration, tune, one row per known fetched model, kernels."""
    from tmac.kernels.tiles import cache_path

    kernels = kernel_files()
    return [Entry("prepared", str(prepared_dir()), prepared_files()),
            Entry("calibration", str(cache_dir() / "calibration"), calibration_files()),
            Entry("tune", cache_path(), tune_files()),
            *fetched_entries(),
            Entry("kernels", _kernels_location(kernels), kernels)]


def clear(kind: str, names=None) -> tuple:
    """Delete the files of one kind; returns (files, bytes) removed. Fetched models only by name
    (``names``), and each name must be a known model."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; one of: {', '.join(KINDS)}")
    if kind == "fetched":
        from tmac.model import fetch

        if not names:
            raise ValueError("fetched models are deleted only by name: tmac cache clear fetched "
                             f"--name NAME (known: {', '.join(fetch.MODELS)})")
        for name in names:
            fetch._source(name)                   # unknown name: ValueError before deleting
        chosen = [e for e in fetched_entries() if e.name in names]
    elif names:
        raise ValueError(f"--name applies to fetched models only, not to {kind}")
    else:
        chosen = [e for e in entries() if e.kind == kind]
    files = [f for e in chosen for f in e.files]
    size = sum(_size(f) for f in files)
    for f in files:
        f.unlink(missing_ok=True)
    if kind == "fetched":
        for e in chosen:
            shutil.rmtree(e.location, ignore_errors=True)     # .fetch-* folders of cut downloads
    return len(files), size


# --- the size limit of prepared models ---------------------------------------------------------

def config_path() -> Path:
    return cache_dir() / CONFIG_NAME


def _read_config() -> dict:
    try:
        data = json.loads(config_path().read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def limit() -> tuple:
    """(bytes or None, where it was set: "$TMAC_CACHE_LIMIT", the config file, or "none")."""
    env = os.environ.get(LIMIT_ENV, "").strip()
    if env:
        value = None if env.lower() in _NO_LIMIT else parse_size(env)
        return value, f"${LIMIT_ENV}"
    value = _read_config().get("prepared_limit")
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value, str(config_path())
    return None, "none"


def set_limit(text: str | None):
    """Store the limit in the config file ("none" or None removes it); returns the bytes or None."""
    value = None if text is None or str(text).strip().lower() in _NO_LIMIT else parse_size(text)
    data = _read_config()
    if value is None:
        data.pop("prepared_limit", None)
    else:
        data["prepared_limit"] = value
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)
    return value


def touch(*paths):
    """Record a use of prepared-model files (their mtime is the LRU clock)."""
    for path in paths:
        try:
            os.utime(path)
        except OSError:
            pass


def evict(limit_bytes=None, keep=()) -> list:
    """Delete the least recently used prepared files until the folder fits ``limit_bytes``
    (default: the configured limit; nothing happens without one). Files in ``keep`` stay, even
    if they alone exceed the limit. Returns the deleted paths, oldest first."""
    if limit_bytes is None:
        try:
            limit_bytes, _ = limit()
        except ValueError as error:           # a bad $TMAC_CACHE_LIMIT must not fail a run
            warnings.warn(f"tmac: no eviction: ${LIMIT_ENV}: {error}", RuntimeWarning, stacklevel=2)
            return []
        if limit_bytes is None:
            return []
    keep = {Path(k).resolve() for k in keep}
    stats = []
    for f in prepared_files():
        try:
            st = f.stat()
        except OSError:
            continue                              # another process removed it
        stats.append((st.st_mtime_ns, f, st.st_size))
    total = sum(size for _, _, size in stats)
    removed = []
    for _, f, size in sorted(stats):
        if total <= limit_bytes:
            break
        if f.resolve() in keep:
            continue
        try:
            f.unlink()
        except FileNotFoundError:
            pass
        total -= size
        removed.append(f)
    return removed


def _size(path) -> int:
    try:
        return Path(path).stat().st_size
    except OSError:
        return 0
