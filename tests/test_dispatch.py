"""tmac.kernels.dispatch: ISA choice from CPU features, overrides, refusal of missing ISAs, info."""
import subprocess
import sys

import pytest

from tmac.kernels import dispatch

ALL = {"avx2", "avx512f", "avx512bw", "avx512vbmi", "avx512vnni"}


def test_best_path_for_each_feature_set():
    assert dispatch.choose("lut_int8", features=ALL) == "avx512"
    assert dispatch.choose("lut_int8", features={"avx2"}) == "avx2"
    assert dispatch.choose("lut_float32", features=set()) == "portable"
    assert dispatch.choose("lut_int8", features=ALL - {"avx512vbmi"}) == "avx2"
    assert dispatch.choose("dequant", features=ALL) == "portable"


def test_override_by_argument_and_environment(monkeypatch):
    assert dispatch.choose("lut_int8", "portable", features=ALL) == "portable"
    assert dispatch.choose("lut_int8", "avx2", features=ALL) == "avx2"
    monkeypatch.setenv("TMAC_ISA", "portable")
    assert dispatch.choose("lut_int8", features=ALL) == "portable"
    assert dispatch.choose("lut_int8") == "portable"
    assert dispatch.choose("lut_int8", "avx2", features=ALL) == "avx2"   # argument wins


def test_missing_or_unknown_isa_is_refused(monkeypatch):
    with pytest.raises(RuntimeError, match="lacks"):
        dispatch.choose("lut_int8", "avx512", features={"avx2"})
    with pytest.raises(ValueError):
        dispatch.choose("lut_int8", "neon")
    monkeypatch.setenv("TMAC_ISA", "sse9")
    with pytest.raises(ValueError):
        dispatch.choose("lut_int8")


def test_info_reports_features_and_paths():
    info = dispatch.info()
    assert info["available"][-1] == "portable"
    assert set(info["ops"]) == {"lut_int8", "lut_float32", "dequant"}
    assert all(path in info["available"] for path in info["ops"].values())


def test_why_names_what_each_better_path_lacks():
    avx512 = {"avx512f", "avx512bw", "avx512vbmi", "avx512vnni", "avx2"}
    assert dispatch.why("lut_int8", "avx512", None, avx512) == "the best path"
    assert dispatch.why("lut_int8", "avx2", None, {"avx2", "avx512f"}) == \
        "avx512 needs avx512bw, avx512vbmi, avx512vnni"
    assert dispatch.why("lut_int8", "avx2", "avx2", avx512) == \
        "avx512 not requested (TMAC_ISA / isa=avx2)"
    assert dispatch.why("dequant", "portable", None, avx512) == \
        "avx512 has no dequant kernel; avx2 has no dequant kernel"
    assert set(dispatch.info()["why"]) == set(dispatch.info()["ops"])


def test_import_compiles_and_loads_no_kernel_module():
    code = ("import sys, tmac, tmac.kernels, tmac.kernels.dispatch; "
            "print([m for m in sys.modules if m.startswith('tmac.kernels.lut') or m == 'tmac.kernels.dequant'])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
