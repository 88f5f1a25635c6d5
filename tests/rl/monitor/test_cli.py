"""`asymptote extrapolate` / `compare` on run directories and files, and their one-line errors."""
from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from core.errors import UserError
from rl.monitor import cli
from rl.monitor.fit import sigmoid


def run(argv, capsys):
    """Parse with only this package's verbs, run, return (code, stdout, stderr)."""
    parser = argparse.ArgumentParser(prog="asymptote")
    cli.register(parser.add_subparsers(dest="verb", required=True))
    args = parser.parse_args(argv)
    try:
        code = args.func(args)
    except UserError as err:  # what rl.cli.main prints
        code = 2
        print(f"asymptote: error: {err}", file=__import__("sys").stderr)
    out = capsys.readouterr()
    return code, out.out, out.err


def write_run(run_dir, A=0.61, B=1.92, C_mid=2542.0, seed=0, steps=400):
    """A synthetic curve with known A, B, C_mid in a run directory's layout, to
    measure how well the verbs recover it. What the real controller writes is
    read by tests/rl/test_lifecycle.py (a real run, killed and resumed)."""
    rng = np.random.default_rng(seed)
    run_dir.mkdir(parents=True)
    lines = []
    for step in range(0, steps + 1, 10):
        dh = 25.0 * step
        row = {"step": step, "loss/policy": 0.1, "compute/device_hours": dh, "compute/flops": dh * 3.6e18,
               "compute/gen_tokens": 1000 * step, "compute/train_tokens": 400 * step}
        if step % 20 == 0:
            row["eval/pass_rate"] = 0.3 if step == 0 else float(sigmoid(dh, A, B, C_mid, 0.3) + rng.normal(0, 0.01))
        lines.append(json.dumps(row))
    (run_dir / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    return run_dir


def test_extrapolate_run_dir_json(tmp_path, capsys):
    run_dir = write_run(tmp_path / "run")
    code, out, _ = run(["extrapolate", str(run_dir), "--json", "--bootstrap", "40"], capsys)
    assert code == 0
    d = json.loads(out)
    for key in ("A", "B", "C_mid", "R0", "A_interval", "predicted", "predicted_interval", "r2", "n_points",
                "warnings"):
        assert key in d
    assert d["x"] == "compute/device_hours" and d["y"] == "eval/pass_rate"
    assert d["n_points"] + d["n_burn_in"] == 20  # 21 evals, step 0 gives R0
    assert d["R0"] == pytest.approx(0.3, abs=0.015)  # the step-0 point is a datum for R0
    assert d["budget"] == 10000.0  # default budget: the largest x
    assert d["noise"] == "residuals"  # no evals.jsonl: plain points
    assert d["A"] == pytest.approx(0.61, abs=0.02)
    assert d["A_interval"][0] <= d["A"] <= d["A_interval"][1]
    assert (run_dir / "plots" / "extrapolate.png").exists()


def test_extrapolate_fit_upto_forecasts_held_out_end(tmp_path, capsys):
    run_dir = write_run(tmp_path / "run", A=0.645, B=1.70, C_mid=2500.0, steps=800)
    code, out, _ = run(["extrapolate", str(run_dir), "--json", "--fit-upto", "10000", "--budget", "20000",
                        "--bootstrap", "0"], capsys)
    d = json.loads(out)
    assert code == 0 and d["n_points"] + d["n_burn_in"] == 20  # only x <= 10000
    assert d["predicted"] == pytest.approx(sigmoid(20000.0, 0.645, 1.70, 2500.0, 0.3), abs=0.02)
    assert d["predicted"] == pytest.approx(d["observed"], abs=0.04)  # the held-out last eval


def test_extrapolate_csv_auto_columns_and_summary(tmp_path, capsys):
    x = np.linspace(0, 10000, 25)
    y = sigmoid(x, 0.61, 1.92, 2542, 0.3)
    path = tmp_path / "digitised.csv"
    path.write_text("gpu_hours,pass\n" + "".join(f"{a},{b}\n" for a, b in zip(x, y)))
    code, out, _ = run(["extrapolate", str(path), "--budget", "40000", "--bootstrap", "0"], capsys)
    assert code == 0
    assert "A     = 0.6100" in out and "x=gpu_hours" in out
    assert "plot:" in out and (tmp_path / "digitised.extrapolate.png").exists()


def test_compare_two_runs(tmp_path, capsys):
    # Same ceiling, one run twice as efficient (C_mid halved): fixed-A comparison must show it.
    fast = write_run(tmp_path / "fast", A=0.62, C_mid=2000.0, seed=1)
    slow = write_run(tmp_path / "slow", A=0.62, C_mid=4000.0, seed=2, steps=600)
    plot = tmp_path / "cmp.png"
    code, out, _ = run(["compare", str(fast), str(slow), "--json", "--plot", str(plot), "--bootstrap", "30"],
                       capsys)
    assert code == 0 and plot.exists()
    d = json.loads(out)
    assert d["equal_compute"] == 10000.0  # the most both reached
    a, b = d["runs"]
    assert (a["run"], b["run"]) == ("fast", "slow")
    assert a["at_equal_compute"] > b["at_equal_compute"]
    assert a["C_mid_fixed_A"] == pytest.approx(2000, rel=0.2)
    assert b["C_mid_fixed_A"] == pytest.approx(4000, rel=0.2)
    code, out, _ = run(["compare", str(fast), str(slow), "--plot", str(plot), "--bootstrap", "0"], capsys)
    assert code == 0 and "fast" in out and "B|A" in out


@pytest.mark.parametrize("content, extra, msg", [
    ("", [], "empty"),
    ("a,b,c\n1,2,3\n2,3,4\n", [], "pass --x and --y"),
    ("x,y\n0,0.3\n1,0.4\n", [], "too few points"),
    ("x,y\n0,0.3\n1,0.4\n2,nan\n3,0.5\n4,0.5\n5,0.5\n", [], "not a pair of numbers"),
    ("x,y\n0,0.3\n2,0.4\n1,0.45\n3,0.5\n4,0.5\n5,0.5\n", [], "must increase"),
    ("x,y\n0,0.3\n1,0.4\n", ["--x", "gpu_hours", "--y", "y"], "no column 'gpu_hours'"),
])
def test_bad_input_one_line(tmp_path, capsys, content, extra, msg):
    path = tmp_path / "curve.csv"
    path.write_text(content)
    code, out, err = run(["extrapolate", str(path), *extra], capsys)
    assert code == 2 and msg in err and err.count("\n") == 1 and "Traceback" not in err


def test_missing_run_dir(tmp_path, capsys):
    code, _, err = run(["extrapolate", str(tmp_path)], capsys)
    assert code == 2 and "no metrics.jsonl" in err and err.count("\n") == 1
    code, _, err = run(["extrapolate", str(tmp_path / "nope.jsonl")], capsys)
    assert code == 2 and "no such file" in err


def test_dispatcher_prints_one_line(tmp_path, capsys):
    rl_cli = pytest.importorskip("rl.cli")
    try:
        rl_cli.build_parser()
    except ImportError:
        pytest.skip("another verb module is not written yet")
    path = tmp_path / "empty.csv"
    path.write_text("")
    assert rl_cli.main(["extrapolate", str(path)]) == 2
    assert capsys.readouterr().err.strip().count("\n") == 0


def write_evals_run(run_dir, *, A=0.61, B=1.92, C_mid=2500.0, seed=0, x_axis="device_hours", evals=21, span=8.0):
    """A run directory with evals.jsonl (per-prompt counts, written by the controller's own
    MetricsLog.append) and metrics.jsonl, from the simulator of rl/monitor/fit_simulate.py."""
    from rl.metrics_log import MetricsLog
    from rl.monitor.fit_simulate import simulate_evals

    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(f"run:\n  name: zoo\n  seed: {seed}\ndata:\n  seed: {seed}\n"
                                         f"monitor:\n  x_axis: {x_axis}\n")
    x = np.linspace(0.0, span * C_mid, evals)
    y, counts = simulate_evals(A, B, C_mid, 0.3, x, spread=3.0, seed=seed)
    lines = []
    for i, (xv, yv, c) in enumerate(zip(x, y, counts.correct)):
        totals = {"compute/device_hours": xv, "compute/tokens": 1e4 * xv}
        MetricsLog.append(run_dir, "evals.jsonl", {"step": 10 * i, "k": 4, "temperature": 1.0, "pass_rate": yv,
                                                   "correct": [int(v) for v in c], **totals})
        lines.append(json.dumps({"step": 10 * i, "eval/pass_rate": yv, **totals}))
    (run_dir / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    return run_dir


def test_extrapolate_weighs_points_by_their_per_prompt_counts(tmp_path, capsys):
    run_dir = write_evals_run(tmp_path / "run")
    code, out, _ = run(["extrapolate", str(run_dir), "--json", "--bootstrap", "40"], capsys)
    d = json.loads(out)
    assert code == 0 and d["noise"] == "per-prompt counts" and "per-prompt results" in d["interval_method"]
    assert d["source"] == str(run_dir / "metrics.jsonl")  # what bench/recipe_zoo.py keys rows by
    assert d["A"] == pytest.approx(0.61, abs=0.03)
    assert d["A_interval"][0] <= d["A"] <= d["A_interval"][1]


def test_extrapolate_several_seeds_jointly(tmp_path, capsys):
    runs = [str(write_evals_run(tmp_path / f"s{s}", seed=s, C_mid=2300.0 + 200 * s)) for s in range(3)]
    code, out, _ = run(["extrapolate", *runs, "--json", "--bootstrap", "30"], capsys)
    d = json.loads(out)
    assert code == 0 and d["labels"] == ["s0", "s1", "s2"]
    assert d["A"] == pytest.approx(0.61, abs=0.02) and d["A_interval"][0] <= d["A"] <= d["A_interval"][1]
    assert len(d["seed_A"]) == 3 and len(d["C_mid"]) == 3
    code, out, _ = run(["extrapolate", *runs, "--bootstrap", "0"], capsys)
    assert code == 0 and "fitted jointly" in out and "seed sd" in out


def test_compare_fits_seeds_of_one_recipe_jointly(tmp_path, capsys):
    a0, a1 = (write_evals_run(tmp_path / f"a{s}", seed=s) for s in (0, 1))
    with (a1 / "config.yaml").open("a") as f:  # a setting added since a0 started, at its default
        f.write("  prior_B: false\n")
    other = write_run(tmp_path / "other", A=0.55)  # no config.yaml: a run of its own
    code, out, _ = run(["compare", str(a0), str(a1), str(other), "--json", "--bootstrap", "20",
                        "--plot", str(tmp_path / "c.png")], capsys)
    d = json.loads(out)
    assert code == 0 and len(d["runs"]) == 3  # one row per run, as before
    assert [g["runs"] for g in d["groups"]] == [["a0", "a1"]]
    assert d["groups"][0]["A"] == pytest.approx(0.61, abs=0.03)


def test_old_run_step0_row_sits_at_zero_compute(tmp_path, capsys):
    # Runs from before evals.jsonl logged the step-0 evaluation's own tokens with it.
    run_dir = write_run(tmp_path / "run")
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    rows[0]["compute/gen_tokens"] = 31695
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, out, _ = run(["extrapolate", str(run_dir), "--x", "compute/gen_tokens", "--json", "--bootstrap", "0"],
                       capsys)
    assert code == 0 and json.loads(out)["r0_source"] == "x=0 point"


def test_startup_cost_is_warned(tmp_path, capsys):
    run_dir = write_evals_run(tmp_path / "run")
    rows = [json.loads(line) for line in (run_dir / "evals.jsonl").read_text().splitlines()]
    for r in rows[1:]:
        r["compute/device_hours"] += 3000.0  # one-time work in the first interval (~3x a block)
    (run_dir / "evals.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, out, _ = run(["extrapolate", str(run_dir), "--json", "--bootstrap", "0"], capsys)
    assert code == 0 and any("start-up work" in w for w in json.loads(out)["warnings"])


def test_more_bad_input_one_line(tmp_path, capsys):
    hours = write_evals_run(tmp_path / "hours")
    tokens = write_evals_run(tmp_path / "tokens", x_axis="tokens", seed=1)
    for verb in ("extrapolate", "compare"):
        code, _, err = run([verb, str(hours), str(tokens), "--plot", str(tmp_path / "p.png")], capsys)
        assert code == 2 and "x columns differ" in err and err.count("\n") == 1
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    code, _, err = run(["extrapolate", str(hours), "--plot", str(blocker / "plot.png")], capsys)
    assert code == 2 and "cannot write the plot" in err and err.count("\n") == 1
    (tmp_path / "empty").mkdir()
    code, _, err = run(["compare", str(hours), str(tmp_path / "empty")], capsys)
    assert code == 2 and "not a run directory" in err and err.count("\n") == 1
