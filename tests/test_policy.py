"""Exported policies: export -> load reproduces the trainer's deterministic actor (agent units and
ctrl units), metadata, several members, export from a checkpoint, the Gymnasium evaluation and
video commands, and their one-line errors. One tiny training run (128 env steps) serves all."""
import dataclasses
import json
import os
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import envs
from savgo_mjx import evaluate, report, video
from savgo_mjx.config import members
from savgo_mjx.metrics import read_metrics
from savgo_mjx.normalize import normalize
from savgo_mjx.policy import (export_from_checkpoint, export_policies, load_policy, policy_files,
                              policy_path, read_config)
from savgo_mjx.train_loop import train
from savgo_mjx.trainer import Trainer

from test_train_loop import TINY

RUN = dataclasses.replace(TINY, total_steps=128)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    run_dir = str(tmp_path_factory.mktemp("tiny"))
    train(dataclasses.replace(RUN, run_dir=run_dir))
    return run_dir


@pytest.fixture(scope="module")
def env():
    return envs.make(RUN.env)


def _restore(cfg, run_dir, env):
    from savgo_mjx.checkpoint import Checkpointer

    trainer = Trainer(cfg, env)
    like = jax.eval_shape(lambda: trainer.init_members(members(cfg)))
    checkpointer = Checkpointer(run_dir)
    try:
        return trainer, checkpointer.restore(like)
    finally:
        checkpointer.close()


def _observations(n=64, seed=0):
    """[n, 4]; the last 8 rows lie far outside the training data (the normaliser's clip)."""
    rng = np.random.default_rng(seed)
    obs = rng.normal(0.0, [0.5, 0.1, 1.0, 2.0], size=(n, 4))
    obs[-8:] *= 1e3
    return obs.astype(np.float32)


def _trainer_actions(trainer, ts, member, obs):
    """What the training code does at evaluation: act_deterministic on normalised obs."""
    actor = jax.tree.map(lambda x: x[member], ts.agent.actor)
    stats = jax.tree.map(lambda x: x[member], ts.obs_stats)
    return np.asarray(trainer.agent.act_deterministic(actor, normalize(stats, jnp.asarray(obs),
                                                                       trainer.cfg.obs_norm)))


def test_export_next_to_the_checkpoint_with_metadata(tiny_run):
    assert list(policy_files(tiny_run)) == [0]
    policy = load_policy(policy_path(tiny_run, 0))
    meta = policy.metadata
    assert meta["env"] == "inverted_pendulum" and meta["gym_id"] == "InvertedPendulum-v5"
    assert meta["physics"] == "v5" and meta["algo"] == "savgo"
    assert (meta["observation_size"], meta["action_size"]) == (4, 1)
    assert meta["hidden_sizes"] == [RUN.hidden, RUN.hidden] and meta["obs_norm"] is True
    assert meta["seed"] == 0 and meta["member"] == 0 and meta["env_steps"] == RUN.total_steps
    np.testing.assert_array_equal(policy.ctrl_low, [-3.0])
    np.testing.assert_array_equal(policy.ctrl_high, [3.0])
    assert policy.obs_mean.shape == (4,) and np.all(policy.obs_var > 0)
    # Plain numpy: readable without this code and without pickle.
    with np.load(policy_path(tiny_run, 0), allow_pickle=False) as data:
        assert json.loads(str(data["metadata"]))["gym_id"] == "InvertedPendulum-v5"


def test_loaded_policy_reproduces_the_trainers_deterministic_actor(tiny_run, env):
    trainer, ts = _restore(read_config(tiny_run), tiny_run, env)
    policy = load_policy(policy_path(tiny_run, 0))
    obs = _observations()
    expected = _trainer_actions(trainer, ts, 0, obs)
    np.testing.assert_allclose(policy.agent_action(obs), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(policy(obs), np.asarray(env.scale_action(jnp.asarray(expected))),
                               rtol=1e-5, atol=1e-5)
    assert np.all(np.abs(policy(obs)) <= 3.0)
    # Any leading axes, float64 input (Gymnasium's observations), a single observation.
    np.testing.assert_allclose(policy(obs.reshape(8, 8, 4).astype(np.float64)),
                               policy(obs).reshape(8, 8, 1), rtol=1e-5)
    assert policy(obs[0].astype(np.float64)).shape == (1,)
    with pytest.raises(ValueError, match=r"expects observations \[\.\.\., 4\]"):
        policy(np.zeros(5))


def test_files_without_the_normalisation_keys_keep_the_old_rule(tiny_run, tmp_path):
    """Files exported before the std floor and clip existed standardise as they were trained:
    (obs - mean) / sqrt(var + 1e-8), unclipped."""
    policy = load_policy(policy_path(tiny_run, 0))
    meta = policy.metadata
    assert (meta["obs_std_floor"], meta["obs_clip"]) == (1e-2, 10.0)
    legacy = dataclasses.replace(policy, metadata={k: v for k, v in meta.items()
                                                   if k not in ("obs_norm_eps", "obs_std_floor", "obs_clip")},
                                 obs_var=np.array([0.0, 1e-6, 1.0, 4.0], np.float32))
    obs = _observations()
    expected = (obs - legacy.obs_mean) / np.sqrt(legacy.obs_var + np.float32(1e-8))
    np.testing.assert_allclose(legacy.normalize(obs), expected, rtol=1e-6)
    assert np.abs(legacy.normalize(obs)).max() > 1e3
    assert np.abs(dataclasses.replace(legacy, metadata=meta).normalize(obs)).max() == 10.0


def test_export_from_checkpoint_writes_the_same_files(tiny_run, tmp_path):
    copy = str(tmp_path / "run")
    shutil.copytree(tiny_run, copy)
    shutil.rmtree(os.path.join(copy, "policies"))
    assert export_from_checkpoint(copy) == [policy_path(copy, 0)]
    with np.load(policy_path(tiny_run, 0)) as a, np.load(policy_path(copy, 0)) as b:
        assert a.files == b.files
        for k in a.files:
            if k != "metadata":
                np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_every_member_is_exported_with_its_own_actor_and_statistics(env, tmp_path):
    cfg = dataclasses.replace(RUN, num_seeds=2)
    trainer = Trainer(cfg, env)
    ts = trainer.init_members(members(cfg))  # fresh actors: no training program to compile
    rng = np.random.default_rng(1)
    stats = ts.obs_stats.replace(mean=jnp.asarray(rng.normal(size=(2, 4)), jnp.float32),
                                 var=jnp.asarray(rng.uniform(0.01, 4.0, size=(2, 4)), jnp.float32),
                                 count=jnp.full((2,), 1000.0))
    ts = ts.replace(obs_stats=stats, env_steps=jnp.full((2,), 4096, jnp.int32))
    paths = export_policies(str(tmp_path), trainer.cfg, trainer.env, ts)
    assert paths == [policy_path(str(tmp_path), 0), policy_path(str(tmp_path), 1)]
    obs = _observations(seed=2)
    actions = []
    for i in range(2):
        policy = load_policy(paths[i])
        assert (policy.metadata["member"], policy.metadata["seed"], policy.metadata["env_steps"]) == (i, i, 4096)
        np.testing.assert_allclose(policy.obs_mean, stats.mean[i])
        actions.append(policy.agent_action(obs))
        np.testing.assert_allclose(actions[-1], _trainer_actions(trainer, ts, i, obs), rtol=1e-5, atol=1e-6)
    assert np.abs(actions[0] - actions[1]).max() > 1e-3

    # Without observation normalisation the file has no statistics and the actor sees raw obs.
    raw = Trainer(dataclasses.replace(cfg, obs_norm=False), env)
    policy = load_policy(export_policies(str(tmp_path / "raw"), raw.cfg, raw.env, ts)[1])
    assert policy.obs_mean is None and policy.metadata["obs_norm"] is False
    np.testing.assert_allclose(policy.agent_action(obs), _trainer_actions(raw, ts, 1, obs), rtol=1e-5, atol=1e-6)


def test_evaluate_cli_prints_gymnasium_and_mjx_returns(tiny_run, capsys):
    assert evaluate.main([tiny_run, "--episodes", "2"]) == 0
    out = capsys.readouterr().out
    assert "Gymnasium InvertedPendulum-v5" in out and "MJX eval" in out and "ratio" in out, out
    assert evaluate.main([tiny_run, "--episodes", "2", "--all-members", "--json", "--seed", "3"]) == 0
    [line] = capsys.readouterr().out.strip().splitlines()
    result = json.loads(line)
    last_eval = [r for r in read_metrics(tiny_run) if r.get("eval_return") is not None][-1]
    assert result["mjx_eval_return"] == last_eval["eval_return"]
    assert result["mjx_eval_steps"] == RUN.total_steps and result["eval_seed"] == 3
    assert len(result["gym_returns"]) == 2 and result["gym_return"] == np.mean(result["gym_returns"])
    assert result["ratio"] == pytest.approx(result["gym_return"] / result["mjx_eval_return"])
    # Deterministic: the same seed gives the same returns.
    again = evaluate.evaluate_run(tiny_run, [0], episodes=2, seed=3)[0]
    assert again["gym_returns"] == result["gym_returns"]


def test_evaluate_save_appends_results_that_the_report_reads(tiny_run, tmp_path, capsys):
    run = str(tmp_path / "run")
    shutil.copytree(tiny_run, run)
    assert evaluate.main([run, "--episodes", "2", "--save"]) == 0
    assert evaluate.main([run, "--episodes", "3", "--seed", "1", "--save", "--json"]) == 0
    rows = [json.loads(line) for line in open(os.path.join(run, evaluate.GYM_EVAL_FILE))]
    assert [r["episodes"] for r in rows] == [2, 3]  # appended, not overwritten
    latest = evaluate.read_saved_results(run)[0]  # same env steps: the one saved last
    assert latest == rows[1]
    [curve] = report.load_run(run)
    assert curve.gym_return == pytest.approx(np.mean(rows[1]["gym_returns"])) and curve.gym_episodes == 3


def test_evaluate_and_video_errors_are_one_line_with_exit_code_2(tiny_run, tmp_path, capsys):
    empty = str(tmp_path / "empty")
    os.makedirs(empty)
    cases = [
        ([str(tmp_path / "missing")], "no run directory"),
        ([empty], "no exported policies in"),
        ([tiny_run, "--member", "1"], "has no policy of member 1; exported members: 0"),
        ([tiny_run, "--member", "0", "--all-members"], "not allowed with"),
        ([tiny_run, "--episodes", "0"], "--episodes must be positive"),
    ]
    for args, message in cases:
        assert evaluate.main(args) == 2, args
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
    for args, message in [([empty], "no exported policies in"), ([tiny_run, "--member", "2"], "member 2")]:
        assert video.main(args) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    # The real command: exit code 2 from `python -m`.
    proc = subprocess.run([sys.executable, "-m", "savgo_mjx.evaluate", empty], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a savgo-mjx policy file"):
        load_policy(str(bad))
    with pytest.raises(FileNotFoundError):
        load_policy(str(tmp_path / "none.npz"))


def test_video_writes_an_mp4_of_one_deterministic_episode(tiny_run, tmp_path, capsys):
    import imageio_ffmpeg

    out = str(tmp_path / "clip.mp4")
    assert video.main([tiny_run, "--out", out, "--steps", "3"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"{out}: ") and " frames at 25 fps" in printed, printed
    frames, _ = imageio_ffmpeg.count_frames_and_secs(out)
    result = video.render_run(tiny_run, 0, str(tmp_path / "again.mp4"), steps=3)
    assert result["steps"] <= 3 and result["frames"] == result["steps"] + 1
    assert frames == result["frames"] and os.path.getsize(out) > 0
    # Default path inside the run dir.
    assert video.render_run(tiny_run, 0, steps=1)["path"] == os.path.join(tiny_run, "videos", "member-0.mp4")


def test_background_evaluator_returns_in_order_whatever_the_thread_count(tiny_run):
    """Each episode has its own env and seed: 1 or 3 threads give the same returns as running the
    seeded episodes one by one, and results come back in submission order, each once."""
    policy = load_policy(policy_path(tiny_run, 0))
    expected = [evaluate.run_seeded_episode(policy, evaluate.episode_seed(policy.metadata["seed"],
                                                                          policy.metadata["env_steps"], e))
                for e in range(3)]
    for workers in (1, 3):
        evaluator = evaluate.BackgroundEvaluator(episodes=3, workers=workers)
        try:
            evaluator.submit([policy], "first")
            evaluator.submit([policy, policy], "second")
            assert evaluator.pending == 2
            done = evaluator.finished(max_pending=0)
            assert evaluator.pending == 0 and evaluator.finished() == []
        finally:
            evaluator.close()
        assert [tag for tag, _, _ in done] == ["first", "second"]
        evaluator = evaluate.BackgroundEvaluator(episodes=1, workers=workers)
        try:
            for tag in range(3):
                evaluator.submit([policy], tag)
            assert [tag for tag, _, _ in evaluator.finished(max_pending=1)][:2] == [0, 1]
            assert evaluator.pending <= 1
        finally:
            evaluator.close()
        (_, returns1, lengths1), (_, returns2, _) = done
        assert returns1.shape == (1, 3) and returns2.shape == (2, 3)
        np.testing.assert_array_equal(returns1[0], [r for r, _ in expected])
        np.testing.assert_array_equal(lengths1[0], [n for _, n in expected])
        np.testing.assert_array_equal(returns2, np.stack([returns1[0]] * 2))


def test_a_failing_evaluation_episode_is_nan_and_reported_not_raised(tiny_run):
    """An episode that raises must not end a training run: NaN return, the error kept."""
    policy = load_policy(policy_path(tiny_run, 0))
    broken = dataclasses.replace(policy, metadata=dict(policy.metadata, gym_id="NoSuchTask-v5"))
    evaluator = evaluate.BackgroundEvaluator(episodes=2, workers=2)
    try:
        evaluator.submit([policy, broken], "mixed")
        [(tag, returns, lengths)] = evaluator.finished(max_pending=0)
    finally:
        evaluator.close()
    assert np.isfinite(returns[0]).all() and np.isnan(returns[1]).all() and (lengths[1] == 0).all()
    assert len(evaluator.errors) == 2 and "NoSuchTask" in evaluator.errors[0]
