"""``tmac fp4-study`` / ``tmac fp4-bench``: the numbers come from the formats, checked independently."""

import numpy as np
import pytest

from tmac import fp4_study
from tmac.cli import main


def test_measure_matches_independent_nmse():
    w = fp4_study.synthetic("laplacian", 16, 256, seed=3)
    got = fp4_study.measure(w, 64, formats=["M0E4 minmax", "E2M1 absmax scale"], n_tokens=4)
    from tmac.reference import e2m1, m0e4

    wq = m0e4.dequantize(*m0e4.quantize(w, 64, "minmax")).astype(np.float64)
    expected = ((wq - w) ** 2).sum() / (w.astype(np.float64) ** 2).sum()
    assert got["M0E4 minmax"][0] == pytest.approx(expected, rel=1e-12)
    # each E2M1 weight is off by at most half its largest step (6 - 4 = 2, times the scale)
    codes, scales = e2m1.quantize(w, 64)
    err = e2m1.dequantize(codes, scales) - w
    assert (np.abs(err).reshape(16, 4, 64) <= scales[..., None] * (1 + 1e-6)).all()
    assert got["E2M1 absmax scale"][1] > 0


def test_synthetic_weights_have_unit_variance():
    for d in fp4_study.DISTRIBUTIONS:
        assert np.var(fp4_study.synthetic(d, 64, 1024, 0)) == pytest.approx(1, abs=0.03)


def test_fp4_study_command_updates_markdown_and_plots(tmp_path, capsys):
    doc = tmp_path / "doc.md"
    doc.write_text("before\n<!-- fp4-study:begin -->\nold\n<!-- fp4-study:end -->\nafter\n")
    npy = tmp_path / "w.npy"
    np.save(npy, np.random.default_rng(0).standard_normal((4, 64)).astype(np.float32))
    argv = ["fp4-study", "--m", "4", "--k", "128", "--seeds", "1", "--npy", str(npy),
            "--update", str(doc)]
    try:
        import matplotlib  # noqa: F401
        argv += ["--plot", str(tmp_path / "p.png")]
    except ImportError:
        pass
    assert main(argv) == 0
    text = doc.read_text()
    assert text.startswith("before\n") and text.endswith("after\n") and "old" not in text
    for name in fp4_study.FORMATS:
        assert name in text
    assert str(npy) in text and "| 32 |" in text and "| 128 |" in text
    assert "| 64 |" in text
    if "--plot" in argv:
        assert (tmp_path / "p.png").stat().st_size > 1000


def test_fp4_bench_command_runs(capsys):
    assert main(["fp4-bench", "--m", "64", "--k", "128", "--group-size", "32", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "M0E4 bit-trick" in out and "int4 int-to-float" in out and "LUT 4-bit" in out


def test_real_weights_m0e4_reproduces_q4_1_exactly():
    """SmolLM2's Q4_1 blocks (w = d*q + m per 32 weights) are M0E4 with a = 16d, b = m - 16d:
    an M0E4 fit at group 32 must find them with zero error."""
    from tmac.model import fetch

    if not fetch.is_fetched("smollm2"):
        pytest.skip("SmolLM2 not fetched (run: tmac fetch smollm2)")
    from tmac import fp4_study

    (label, embed), (ffn_label, ffn) = fp4_study.smollm2_matrices()
    assert embed.shape == (4096, 576) and ffn.shape == (576, 1536) and "Q4_1" in ffn_label
    rows = fp4_study.measure(ffn[:64], 32, formats=["M0E4 lsq"])
    assert rows["M0E4 lsq"][0] < 1e-12
