"""Smoke tests of benchmarks/env_throughput.py and benchmarks/train_throughput.py at the tiniest
sizes on inverted_pendulum (no brax needed). The figures are meaningless; what is checked is that
every measurement runs and reports a positive, finite throughput, in the returned result and in
the JSON file. The train benchmark's raw-env program is the env benchmark's (same N and length),
so it comes from the session's persistent compilation cache (tests/conftest.py). Both run the
"fast" physics with Euler in place of v5's RK4 (--fast-physics): it compiles in about half the time."""
import json
import math

import pytest

from benchmarks import env_throughput, train_throughput

PHYSICS = ["--physics", "fast", "--fast-physics", '{"integrator": "mjINT_EULER"}']


def _positive_finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def _check_rows(rows):
    assert rows
    for row in rows:
        assert row.get("error") is None, row
        assert _positive_finite(row["steps_per_s"]), row
        assert _positive_finite(row["best_s"]), row


def test_env_throughput_smoke(tmp_path):
    out = tmp_path / "env.json"
    result = env_throughput.main([
        "--task", "inverted_pendulum", *PHYSICS, "--num-envs", "2", "--steps", "2",
        "--repeats", "1", "--no-brax", "--out", str(out),
    ])
    _check_rows(result["rows"])
    assert {(r["impl"], r["mode"]) for r in result["rows"]} == {("ours", "vecenv"), ("ours", "bare")}
    assert all(r["opt"].startswith("euler/") for r in result["rows"])
    assert [q["what"] for q in result["ratios"]] == ["ours fast vecenv / ours fast bare"]
    assert _positive_finite(result["ratios"][0]["ratio"])
    saved = json.loads(out.read_text())
    _check_rows(saved["rows"])
    assert saved["meta"]["jax"] and saved["meta"]["backend"]


def test_env_throughput_reports_a_failure_and_goes_on(monkeypatch):
    def broken(*args, **kwargs):
        raise ImportError("No module named 'brax'")

    monkeypatch.setattr(env_throughput, "prepare_brax", broken)
    monkeypatch.setattr(env_throughput, "prepare_ours", broken)
    result = env_throughput.main(["--task", "inverted_pendulum", "--physics", "v5", "fast",
                                  "--num-envs", "2", "3", "--steps", "1", "--repeats", "1"])
    rows = result["rows"]
    assert len(rows) == 2 * (2 * 2 + 2)  # per N: 2 physics x 2 modes of ours + 2 modes of brax
    assert all("brax" in r["error"] for r in rows)
    assert result["ratios"] == []


TINY_TRAIN = [
    "--env", "inverted_pendulum", *PHYSICS, "--num-envs", "2", "--batch-size", "8",
    "--updates-per-iter", "1", "--num-candidates", "2", "--actor-batch", "4", "--geometry-batch", "4",
    "--hidden", "8", "--buffer-size", "64", "--iterations", "2", "--reps", "1", "--repeats", "1",
]


def test_train_throughput_smoke(tmp_path):
    out = tmp_path / "train.json"
    result = train_throughput.main([*TINY_TRAIN, "--out", str(out)])
    rows = result["rows"]
    _check_rows(rows)
    by_name = {r["name"]: r for r in rows}
    assert set(by_name) == {"e2e", "raw_env", "env_step", "insert", "updates", "updates_sac"}
    assert by_name["e2e"]["learned"] is True  # the timed chunk ran gradient updates
    for name in ("updates", "updates_sac"):
        assert _positive_finite(by_name[name]["ms_per_update"])
    ratios = result["ratios"]
    for key in ("savgo_over_sac_update_cost", "train_over_raw_env_steps_per_s", "sum_of_parts_ms_per_iter"):
        assert _positive_finite(ratios[key]), key
    assert sum(ratios["share_of_parts"].values()) == pytest.approx(1.0)
    saved = json.loads(out.read_text())
    _check_rows(saved["rows"])
    assert saved["config"]["num_envs"] == 2 and saved["config"]["algo"] == "savgo"


def test_train_throughput_updates_only():
    # The same update programs as the test above come from the compilation cache; bf16 is new.
    result = train_throughput.main([*TINY_TRAIN, "--updates-only"])
    _check_rows(result["rows"])
    assert [r["name"] for r in result["rows"]] == ["updates", "updates_sac", "updates_bf16"]
    assert "bfloat16 scoring" in result["rows"][2]["what"]
    assert _positive_finite(result["ratios"]["savgo_over_sac_update_cost"])
    assert _positive_finite(result["ratios"]["bf16_over_f32_scoring_update_cost"])
