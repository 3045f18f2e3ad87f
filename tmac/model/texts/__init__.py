"""Public-domain texts shipped with tmac for perplexity: ``path(name)``, ``read(name)``.

    declaration_gettysburg   the US Declaration of Independence (1776) and the Gettysburg
                             Address (1863), 9.7 KB, 2057 SmolLM2 tokens: the default text of
                             ``tmac perplexity`` and ``tmac bench model``
    tmac_docs                tmac's own documentation (docs/*.md of commit d16c9c5 joined in
                             name order), 143 KB, technical English with tables and code: the
                             text of the issue-19 fitting study's protocol (24 chunks of 256);
                             ``tmac perplexity tmac_docs --max-chunks 24``
"""
from __future__ import annotations

from pathlib import Path

DEFAULT = "declaration_gettysburg"


def names() -> tuple:
    return tuple(sorted(p.stem for p in Path(__file__).parent.glob("*.txt")))


def path(name: str = DEFAULT) -> Path:
    """The file of a shipped text; ValueError naming the choices."""
    p = Path(__file__).parent / f"{name}.txt"
    if not p.is_file():
        raise ValueError(f"no shipped text {name!r}; choose one of {', '.join(names())}")
    return p


def read(name: str = DEFAULT) -> str:
    return path(name).read_text(encoding="utf-8")


def resolve(name_or_path: str | None, argument: str = "text") -> Path:
    """A text argument: an existing file, a shipped text's name, or None for the default;
    ValueError naming ``argument`` and the shipped texts otherwise."""
    if name_or_path is None:
        return path()
    if Path(name_or_path).is_file():
        return Path(name_or_path)
    if name_or_path in names():
        return path(name_or_path)
    raise ValueError(f"{argument}: no such file or shipped text {name_or_path!r} (shipped: "
                     f"{', '.join(names())})")
