"""Smoke tests of benchmarks/env_throughput.py, train_throughput.py and eval_cost.py at the tiniest
sizes on inverted_pendulum (no brax needed), and of brax_ppo.py's adapter under brax's wrappers.
The figures are meaningless; what is checked is that every measurement runs and reports a
positive, finite throughput, in the returned result and in the JSON file. The train benchmark's
raw-env program is the env benchmark's (same N and length), so it comes from the session's
persistent compilation cache (tests/conftest.py). Both run the "fast" physics with Euler in place
of v5's RK4 (--fast-physics): it compiles in about half the time."""
import json
import math

import jax
import jax.numpy as jnp
import pytest

import envs
from benchmarks import env_throughput, eval_cost, train_throughput

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
    # The same update programs as the test above come from the compilation cache; bf16 and the
    # TF32 pair are new.
    result = train_throughput.main([*TINY_TRAIN, "--updates-only"])
    _check_rows(result["rows"])
    assert [r["name"] for r in result["rows"]] == ["updates", "updates_sac", "updates_bf16", "updates_tf32",
                                                   "updates_sac_tf32"]
    assert "bfloat16 scoring" in result["rows"][2]["what"]
    assert "tensorfloat32 matmuls" in result["rows"][3]["what"] and "(sac," in result["rows"][4]["what"]
    for key in ("savgo_over_sac_update_cost", "bf16_over_f32_scoring_update_cost", "tf32_over_f32_savgo_update_cost",
                "tf32_over_f32_sac_update_cost", "savgo_over_sac_update_cost_tf32"):
        assert _positive_finite(result["ratios"][key]), key
    assert result["flops"]["savgo_over_sac_update_flops"] > 1.0
    for row in result["rows"]:
        assert _positive_finite(row["achieved_tflop_per_s"]), row


def test_update_flops_count_the_candidate_matmuls():
    """XLA's count of the P x K scoring is the matmuls' 2mkn (embedding: first layer's action half
    on P x K rows, obs half on P rows, 3 hidden/output layers; two critics: first layer, hidden,
    output), to within the elementwise work; it scales with P, and SAC has none of it."""
    import dataclasses

    from savgo_mjx.config import defaults_for

    o, a, h, p, k = 11, 3, 32, 8, 16
    cfg = dataclasses.replace(defaults_for("hopper"), hidden=h, actor_batch=p, num_candidates=k, batch_size=64,
                              geometry_batch=16)
    rows = p * k
    matmuls = (rows * a * h + p * o * h + 3 * rows * h * h  # embedding
               + 2 * (rows * a * h + p * o * h + rows * h * h + rows * h))  # two critics
    savgo = train_throughput.update_flops(cfg, o, a)
    assert 2 * matmuls <= savgo["candidate_gflop"] * 1e9 <= 1.15 * 2 * matmuls
    assert savgo["gflop_per_update"] > savgo["candidate_gflop"]
    doubled = train_throughput.update_flops(dataclasses.replace(cfg, actor_batch=2 * p), o, a)
    assert doubled["candidate_gflop"] == pytest.approx(2 * savgo["candidate_gflop"], rel=0.02)
    sac = train_throughput.update_flops(dataclasses.replace(cfg, algo="sac"), o, a)
    assert sac["candidate_gflop"] == 0.0 and 0 < sac["gflop_per_update"] < savgo["gflop_per_update"]


def test_brax_ppo_adapter_steps_our_v5_env_under_brax_wrappers():
    """brax's training wrappers (vmap, episode length, auto-reset) around our InvertedPendulum:
    each step is our env's step (same obs and reward), done is our termination, and a finished
    episode restarts from the state of its first reset, as brax's auto-reset does."""
    import numpy as np
    from brax.envs.wrappers import training as brax_training

    from benchmarks import brax_ppo

    brax_ppo.patch_brax_for_new_jax()
    env = brax_ppo.make_brax_env("inverted_pendulum", "fast")
    ours = envs.make("inverted_pendulum", physics="fast")
    assert (env.observation_size, env.action_size) == (ours.observation_size, ours.action_size)
    wrapped = brax_training.wrap(env, episode_length=1000)
    state = jax.jit(wrapped.reset)(jax.random.split(jax.random.PRNGKey(0), 2))
    first_obs = np.asarray(state.obs)
    # One program for both steps (each MJX step is a compile of its own otherwise).
    both = jax.jit(lambda s, a: (wrapped.step(s, a), jax.vmap(ours.step)(s.pipeline_state, a)))
    push = jnp.array([[1.0], [-1.0]])  # full force: both poles fall within a few dozen steps
    ended = np.zeros(2, bool)
    for _ in range(200):
        state, expected = both(state, push)
        done = np.asarray(state.done, bool)
        np.testing.assert_array_equal(done, np.asarray(expected.terminated))
        np.testing.assert_allclose(np.asarray(state.reward), np.asarray(expected.reward))
        for i in range(2):
            want = first_obs[i] if done[i] else np.asarray(expected.obs)[i]
            np.testing.assert_allclose(np.asarray(state.obs)[i], want, rtol=1e-6)
        ended |= done
        if ended.all():
            break
    assert ended.all(), "a pole pushed at full force for 200 steps never fell"


@pytest.mark.parametrize("flags, message", [
    (["--eval-every", "0"], "--eval-every must be positive"),
    (["--num-envs", "-4"], "--num-envs must be positive"),
    (["--num-envs", "3"], "must be a multiple of --num-envs (3)"),
])
def test_brax_ppo_bad_sizes_are_one_line_errors(flags, message, capsys):
    from benchmarks import brax_ppo

    with pytest.raises(SystemExit) as exit_info:
        brax_ppo.parse_args(["--run-dir", "unused", *flags])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.slow
def test_brax_ppo_run_is_a_report_run_and_stops_on_ctrl_c(tmp_path):
    """brax's PPO end to end at tiny sizes (~1-2 min of compile on 2 cores): Ctrl-C after the first
    evaluation stops it cleanly, and what it wrote is a run dir that savgo_mjx.report reads."""
    import os
    import signal
    import threading
    import time

    from benchmarks import brax_ppo
    from savgo_mjx import report

    run_dir = tmp_path / "ppo"
    metrics = run_dir / "metrics.jsonl"

    def interrupt_after_first_row():
        while not (metrics.exists() and metrics.read_text().strip()):
            time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt_after_first_row, daemon=True).start()
    assert brax_ppo.main(["--env", "inverted_pendulum", "--run-dir", str(run_dir), "--num-envs", "8",
                          "--batch-size", "8", "--num-minibatches", "4", "--updates-per-batch", "2",
                          "--unroll-length", "5", "--total-steps", "1000000", "--eval-every", "2000",
                          "--eval-envs", "4"]) == 0
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert 1 <= len(rows) < 500  # stopped long before its million steps
    assert all(math.isfinite(r["eval_return"]) and r["eval_return"] > 0 for r in rows)
    (curve,) = report.load_run(str(run_dir))
    assert curve.algo == "brax-ppo" and curve.env == "inverted_pendulum"
    assert report.group([curve]).popitem()[0].label == "brax PPO"


def test_eval_cost_smoke(tmp_path):
    out = tmp_path / "eval.json"
    rows = eval_cost.main(["--env", "inverted_pendulum", "--physics", "fast", "--episodes", "2",
                           "--steps", "3", "--workers", "1", "2", "--repeats", "1", "--out", str(out)])
    assert [(r["backend"], r["workers"]) for r in rows] == [("mjx", None), ("gymnasium", 1), ("gymnasium", 2)]
    assert all(_positive_finite(r["s_per_eval"]) for r in rows), rows
    assert rows[0]["over_mjx"] == 1.0 and _positive_finite(rows[1]["over_mjx"])
    assert json.loads(out.read_text()) == rows
