"""Golden vectors: every stage of the reference, written for ports in other languages.

    tmac golden export DIR     write the cases (safetensors files), MANIFEST.json and INDEX.txt
    tmac golden verify DIR     checksums, then every case recomputed by the reference and by
                               every kernel path of this CPU; failures name case, tensor,
                               first differing index and both values

Modules: ``container`` (the safetensors layout, written and read by hand, defensively),
``cases`` (the case list, deterministic inputs, the stages), ``backends`` (how each op of
``tmac.registry.OPS`` is called), ``export`` and ``verify``. docs/golden-format.md is the spec;
examples/native/ holds a C99 program that checks itself against an export.
"""
from tmac.golden.container import GoldenFormatError
from tmac.golden.export import SCHEMA_VERSION, export
from tmac.golden.verify import Report, verify

__all__ = ["GoldenFormatError", "Report", "SCHEMA_VERSION", "export", "verify"]
