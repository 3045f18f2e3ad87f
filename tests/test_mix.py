"""Mixed precision under a bits budget (tmac.model.mix): the measured sensitivity against the
runtime's own perplexity, the allocation against brute force, and ``tmac quantize --bpw``."""
import itertools
import json

import numpy as np
import pytest

from tmac.model import mix

BUDGET_CASES = [3.2, 3.6, 4.0, 4.5, 5.3]


def brute_force(cost, sizes, budget_bpw, group):
    """The least summed cost over every assignment of widths that fits the budget."""
    names = list(cost)
    total = sum(sizes.values())
    best = None
    for widths in itertools.product(*(sorted(cost[m]) for m in names)):
        used = sum(mix.stored_bytes(sizes[m], b, group) for m, b in zip(names, widths))
        if used <= budget_bpw * total / 8:
            c = sum(cost[m][b] for m, b in zip(names, widths))
            best = c if best is None else min(best, c)
    return best


def convex_costs(rng, n):
    """Costs falling with the width, each extra bit saving less than the one before."""
    out = {}
    for i in range(n):
        start = rng.uniform(0.05, 2.0)
        ratio = rng.uniform(0.15, 0.45)
        out[f"m{i}"] = {b: start * ratio ** (b - 2) for b in (2, 3, 4, 5, 6, 8)}
    return out


@pytest.mark.parametrize("budget", BUDGET_CASES)
def test_allocation_meets_the_budget_and_is_optimal_on_small_cases(budget):
    rng = np.random.default_rng(int(budget * 10))
    for _ in range(5):
        cost = convex_costs(rng, 5)
        sizes = {m: int(rng.integers(1, 9)) * 4096 for m in cost}
        plan = mix.allocate(cost, sizes, budget, 32)
        assert plan.bits_per_weight() <= budget + 1e-9
        want = brute_force(cost, sizes, budget, 32)
        assert plan.predicted_cost() == pytest.approx(want, rel=1e-12)     # exact here


def test_allocation_extremes_and_a_budget_too_small():
    cost = convex_costs(np.random.default_rng(0), 4)
    sizes = {m: 1024 for m in cost}
    assert set(mix.allocate(cost, sizes, 9.0, 32).bits.values()) == {8}       # 8 + 1 = 9 bpw
    assert set(mix.allocate(cost, sizes, 3.0, 32).bits.values()) == {2}       # 2 + 1 = 3 bpw
    with pytest.raises(ValueError, match="bpw: 2.5 bits per weight is below the narrowest plan"):
        mix.allocate(cost, sizes, 2.5, 32)


def test_extrapolated_widths_quarter_the_cost_per_bit():
    cost = mix.extend({"a": {2: 1.0, 3: 0.5, 4: 0.2}})
    assert cost["a"] == {2: 1.0, 3: 0.5, 4: 0.2, 5: 0.05, 6: 0.0125, 8: 0.2 / 256}


def test_stored_bytes_count_codes_and_float16_scale_and_offset():
    assert mix.stored_bytes(64 * 32, 3, 32) == 64 * 32 * 3 / 8 + 64 * 2 * 2


gguf = pytest.importorskip("gguf", reason="the 'model' extra (gguf) is not installed")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from tmac.model import loader, tiny

    return loader.load(tiny.write_tiny_llama(tmp_path_factory.mktemp("mix") / "tiny.gguf"))


def test_sensitivity_is_the_runtimes_perplexity_change(tiny_model):
    """One matrix alone at a width, the rest float32: the NLL change the f32 runtime and
    tmac.model.generate.perplexity measure on the same tokens (an independent path: fused
    buffers, chunked forward, its own scoring)."""
    from tmac.model import formats, runtime
    from tmac.model.generate import perplexity

    ids = np.random.default_rng(0).integers(3, tiny_model.config.vocab_size, (3, 32))
    cost = mix.sensitivity(tiny_model.weights, ids, 16)
    floats = mix.float_matrices(tiny_model.weights)
    assert set(cost) == set(floats) and all(set(c) == {2, 3, 4} for c in cost.values())

    def runtime_nll(name=None, bits=None):
        pm = runtime.prepare(tiny_model.weights, formats.parse("f32"))
        if name is not None:
            deq = formats.ModelFormat(f"w{bits}", bits, 16, "affine", fit="lsq") \
                .quantize(floats[name]).dequantize()
            if name == "head":
                pm.head = deq
            else:
                layer, kind = name.split(".")
                pm.layers[int(layer)][kind] = deq
        rt = runtime.Runtime(pm, max_ctx=32, max_seq=32)
        return perplexity(rt, ids.reshape(-1), 32).nll

    base = runtime_nll()
    for name, bits in (("1.down", 2), ("0.qkv", 3), ("head", 2), ("1.gate_up", 4)):
        assert cost[name][bits] == pytest.approx(runtime_nll(name, bits) - base, abs=2e-5)


def test_quantize_with_a_budget_saves_the_plan_and_runs(tmp_path, monkeypatch, capsys):
    from tmac.cli import main
    from tmac.golden import container
    from tmac.model import modelfile, tiny

    monkeypatch.setenv("TMAC_CACHE_DIR", str(tmp_path / "cache"))
    path = tiny.write_tiny_llama(tmp_path / "tiny.gguf")
    text = tmp_path / "calib.txt"
    text.write_text("the quick brown fox jumps over the lazy dog. " * 60)
    out = tmp_path / "mix.tmac"
    assert main(["quantize", str(path), "--bpw", "5.6", "--group-size", "16", "--calibration",
                 str(text), "-o", str(out), "--quiet"]) == 0
    _, meta = container.read(str(out), max_file_bytes=1 << 40)
    plan = json.loads(meta["plan"])
    _, model = modelfile.load(out)
    names = ["head"] + [f"{i}.{k}" for i in range(len(model.layers))
                        for k in ("qkv", "o", "gate_up", "down")]
    widths = [m.bits for m in model.matrices()]
    assert widths == [plan["bits"][n] for n in names]
    assert len(set(widths)) > 1                                   # a real mix
    stored = sum(m.shape[0] * m.shape[1] * (m.bits + 32 / 16) / 8 for m in model.matrices())
    n = sum(m.shape[0] * m.shape[1] for m in model.matrices())
    assert 8 * stored / n <= 5.6 and plan["bits_per_weight"] == pytest.approx(8 * stored / n)
    assert min(widths) >= 3                                       # the default --min-bits
    assert model.format.label.startswith("mix 5.6 bpw")
    assert main(["perplexity", "--model", str(out), "--ctx", "32", str(text)]) == 0
    assert "mix 5.6 bpw" in capsys.readouterr().out
    base = ["quantize", str(path), "--group-size", "16", "--calibration", str(text), "-o",
            str(tmp_path / "x.tmac"), "--quiet"]
    assert main(base + ["--bpw", "4.5"]) == 2                    # 3-bit codes + 2: 5 at least
    assert "below the narrowest plan (5.000" in capsys.readouterr().err
    assert main(base + ["--bpw", "4.5", "--min-bits", "2"]) == 0
    assert min(m.bits for m in modelfile.load(tmp_path / "x.tmac")[1].matrices()) == 2
    capsys.readouterr()
    assert main(["quantize", str(path), "-o", str(tmp_path / "y.tmac"), "--min-bits", "2"]) == 2
    assert "--min-bits is only used with --bpw" in capsys.readouterr().err


def test_quality_map_points_are_what_each_command_measures(tmp_path, monkeypatch, capsys):
    from tmac.cli import main
    from tmac.model import tiny

    monkeypatch.setenv("TMAC_CACHE_DIR", str(tmp_path / "cache"))
    path = str(tiny.write_tiny_llama(tmp_path / "tiny.gguf"))
    plot = tmp_path / "map.png"
    assert main(["quality-map", "--model", path, "--widths", "4", "2", "--fits", "lsq",
                 "--group-sizes", "16", "--bpw", "5", "--ctx", "32", "--max-chunks", "3",
                 "--plot", str(plot), "-o", "json"]) == 0
    points = {p["label"]: p for p in json.loads(capsys.readouterr().out)["points"]}
    assert list(points) == ["float32", "native", "w4 g16 lsq", "w2 g16 lsq", "mix 5 lsq"]
    assert points["float32"]["bits_per_weight"] == 32.0
    assert plot.stat().st_size > 10_000
    for label, args in (("w4 g16 lsq", ["--format", "w4", "--group-size", "16"]),
                        ("float32", ["--format", "f32"])):
        assert main(["perplexity", "--model", path, "--ctx", "32", "--max-chunks", "3"]
                    + args) == 0
        assert float(capsys.readouterr().out.splitlines()[-1]) == \
            pytest.approx(points[label]["perplexity"], abs=1e-4)
    assert points["w2 g16 lsq"]["bits_per_weight"] < points["w4 g16 lsq"]["bits_per_weight"]
    with pytest.raises(SystemExit) as bad:
        main(["quality-map", "--model", path, "--fits", "nope"])
    assert bad.value.code == 2 and "--fits" in capsys.readouterr().err


def test_plan_formats_leave_the_head_its_own_fit_under_gptq():
    plan = mix.Plan({"head": 6, "0.qkv": 3}, 32, {"head": 64, "0.qkv": 64})
    f = plan.formats("gptq")
    assert (f["head"].bits, f["head"].fit, f["0.qkv"].bits, f["0.qkv"].fit) == (6, None, 3, "gptq")
    assert plan.formats("hqq")["head"].fit == "hqq"
    assert plan.widths_by_kind() == {"head": {6: 1}, "qkv": {3: 1}}
