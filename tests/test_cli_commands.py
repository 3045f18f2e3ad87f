"""The kernel-facing commands: info, warmup, bench, tune. Their figures are checked for internal
consistency (ratios are the quotients of the printed times), never for speed."""

import json

import pytest

from tmac.kernels import dispatch
from tmac.cli import main


def test_info_names_the_path_dispatch_chooses(capsys, monkeypatch):
    monkeypatch.delenv("TMAC_ISA", raising=False)
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert f"lut_int8    │ {dispatch.choose('lut_int8')}" in out
    monkeypatch.setenv("TMAC_ISA", "portable")
    assert main(["info"]) == 0
    assert "lut_int8    │ portable" in capsys.readouterr().out


def test_warmup_reports_each_op(capsys):
    assert main(["warmup", "--isa", "portable", "--only", "kernels"]) == 0
    out = capsys.readouterr().out
    assert "lut_int8: portable" in out and "dequant: portable" in out


def test_bench_json_ratios_are_quotients_of_the_times(capsys):
    assert main(["bench", "--shapes", "70x100", "--bits", "2", "ternary", "-n", "1", "3",
                 "--regime", "hot", "--repeat", "3", "--group-size", "20", "-o", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert len(rows) == 4
    for row in rows:
        assert row["vs_numpy"] == pytest.approx(row["lut_us"] / row["numpy_us"], rel=1e-2)
        assert row["vs_dequant"] == pytest.approx(row["lut_us"] / row["dequant_us"], rel=1e-2)


def test_bench_times_the_compared_calls_in_alternating_blocks():
    """lut, dequant and numpy must share the same minutes: blocks alternate round by round."""
    from tmac.bench import interleaved_median_us

    order = []
    calls = {name: (lambda name=name: order.append(name)) for name in ("lut", "numpy")}
    medians = interleaved_median_us(calls, {"lut": 10, "numpy": 5}, rounds=5, warmup=1)
    assert order == ["lut", "lut", "lut", "numpy", "numpy"] * 5    # 1 untimed call per block
    assert set(medians) == {"lut", "numpy"} and all(v >= 0 for v in medians.values())


def test_tune_writes_a_cache_entry_per_case(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TMAC_CACHE_DIR", str(tmp_path))
    assert main(["tune", "--shapes", "200x128", "--bits", "2", "--threads", "1"]) == 0
    cache = json.loads((tmp_path / "tune.json").read_text())
    (entry,) = cache.values()
    assert entry["tiles_per_task"] >= 1 and str(entry["tiles_per_task"]) in entry["tried"]


@pytest.mark.parametrize("argv", [["bench", "--shapes", "12xq"], ["tune", "--shapes", "0x5"],
                                  ["info", "--isa", "sparc"]])
def test_bad_arguments_exit_2(argv, capsys):
    assert main(argv) == 2
    assert "error" in capsys.readouterr().err


def test_reports_render_as_rich_html_and_markdown():
    from rich.console import Console

    from tmac.display import Report

    report = Report("speeds", [("name", "kernel", "{}"), ("us", "µs", "{:.1f}")],
                    [{"name": "lut", "us": 12.345}, {"name": "numpy"}])
    console = Console(record=True, width=80)
    console.print(report)
    text = console.export_text()
    assert "12.3" in text and "numpy" in text and "-" in text
    assert "<td>12.3</td>" in report._repr_html_()
    assert report.to_markdown().splitlines()[2] == "| lut | 12.3 |"


def test_warmup_covers_fp4_and_model(capsys):
    assert main(["warmup", "--only", "formats", "model"]) == 0
    out = capsys.readouterr().out
    for op in ("m0e4_dequant_matmul", "e2m1_dequant_matmul", "int4_dequant_matmul"):
        assert f"{op}: portable" in out
    assert "model: " in out


def test_progress_bar_is_quiet_when_not_a_terminal(capsys):
    from tmac.display import progress

    with progress("working", 3) as advance:
        for _ in range(3):
            advance()
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.strip() == ""


MISSING_MODEL_EXTRA = """
import sys
sys.modules["gguf"] = None             # as after a plain `pip install .`
sys.modules["tokenizers"] = None
from tmac.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("command", [["perplexity", "--model", "x.gguf"],
                                     ["generate", "--model", "x.gguf", "hello"]])
def test_missing_model_extra_is_one_line_naming_the_checkout(command, tmp_path):
    import subprocess
    import sys

    (tmp_path / "x.gguf").write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + bytes(40))
    done = subprocess.run([sys.executable, "-c", MISSING_MODEL_EXTRA, *command], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    line = done.stderr.strip()
    assert len(line.splitlines()) == 1 and '"model" extra' in line
    assert "[model]" in line and 'pip install "tmac[model]"' not in line
