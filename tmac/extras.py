"""The optional extras of pyproject.toml, and the one-line hint for a missing one.

tmac is installed from its checkout (the package registry's "tmac" is another project), so the
hint names the checkout: ``pip install ".[model]"`` run in it, or the path to it.
"""
from pathlib import Path

PACKAGES = {"model": "gguf, tokenizers, jinja2", "golden": "safetensors",
            "fp4": "ml_dtypes, matplotlib", "notebooks": "nbclient, nbformat, ipykernel, matplotlib",
            "llamacpp": "llama-cpp-python 0.3.36, built from source: a C/C++ compiler and cmake, "
                        "~10 minutes"}


def checkout() -> str:
    """The folder to install from: this source tree when tmac runs from one, else a placeholder."""
    root = Path(__file__).resolve().parents[1]
    return str(root) if (root / "pyproject.toml").is_file() else "<your tmac checkout>"


def hint(extra: str, what: str) -> str:
    """'<what> needs the "<extra>" extra (<packages>): pip install "<checkout>[<extra>]"'."""
    return (f'{what} needs the "{extra}" extra ({PACKAGES[extra]}): '
            f'pip install "{checkout()}[{extra}]"')


class MissingExtra(ImportError):
    """An optional dependency is not installed; the message says how to add it, in one line."""
