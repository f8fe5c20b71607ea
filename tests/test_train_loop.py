"""The training program end to end on a tiny InvertedPendulum config: exact resume,
determinism, the NaN guard and Ctrl-C. All runs share one compiled program (learning rates are
traced, the persistent cache holds the rest)."""
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from savgo_mjx.checkpoint import Checkpointer
from savgo_mjx.config import Config, defaults_for, members
from savgo_mjx.metrics import read_metrics
from savgo_mjx.train_loop import TrainingDiverged, train
from savgo_mjx.trainer import Trainer

TINY = Config(
    num_envs=8, total_steps=512, warmup_steps=128, buffer_size=2048, batch_size=64,
    updates_per_iter=1, geometry_batch=32, actor_batch=16, num_candidates=8, hidden=32,
    log_every=64, eval_every=256, eval_envs=2, checkpoint_every=256, progress=False,
)
VOLATILE = {"wall_s", "sps"}


def _final_state(cfg: Config, run_dir: str):
    import envs

    like = Trainer(cfg, envs.make(cfg.env)).init_members(members(cfg))
    checkpointer = Checkpointer(run_dir)
    state = checkpointer.restore(like)
    checkpointer.close()
    return state


def _rows(run_dir):
    return [{k: v for k, v in row.items() if k not in VOLATILE} for row in read_metrics(run_dir)]


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    run_dir = str(tmp_path_factory.mktemp("straight"))
    summary = train(dataclasses.replace(TINY, run_dir=run_dir))
    return run_dir, summary


def test_run_writes_config_metrics_and_checkpoint(straight):
    run_dir, summary = straight
    assert summary["env_steps"] == TINY.total_steps
    saved = json.load(open(os.path.join(run_dir, "config.json")))
    assert saved["num_envs"] == TINY.num_envs and saved["run_dir"] == run_dir
    rows = read_metrics(run_dir)
    assert [r["env_steps"] for r in rows] == list(range(64, 513, 64))
    for key in ("env_steps", "wall_s", "sps", "episode_return", "critic_loss", "geometry_loss",
                "actor_loss", "alpha", "beta", "tau"):
        assert key in rows[-1], key
    assert [r["env_steps"] for r in rows if r.get("eval_return") is not None] == [256, 512]
    assert Checkpointer(run_dir).latest_step() == TINY.total_steps


def test_same_seed_gives_identical_metrics(straight, tmp_path):
    run_dir, _ = straight
    train(dataclasses.replace(TINY, run_dir=str(tmp_path)))
    assert _rows(str(tmp_path)) == _rows(run_dir)


def test_resume_continues_exactly(straight, tmp_path):
    run_dir, _ = straight
    half = dataclasses.replace(TINY, run_dir=str(tmp_path), total_steps=TINY.total_steps // 2)
    train(half)
    train(dataclasses.replace(half, total_steps=TINY.total_steps, resume=True))
    a, b = _final_state(TINY, run_dir), _final_state(TINY, str(tmp_path))
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(x, y)
    assert _rows(str(tmp_path)) == _rows(run_dir)


@pytest.mark.slow  # a program of its own: ~2 min of compile on 2 cores (the n-step math is unit-tested)
def test_n_step_run_resumes_exactly_and_differs_from_one_step(straight, tmp_path):
    """--n-step 3 stores the truncation flags, checkpoints them with the buffer, and changes the
    critic's targets (so the run's losses differ from the one-step run's)."""
    cfg = dataclasses.replace(TINY, n_step=3, run_dir=str(tmp_path / "straight"))
    train(cfg)
    half = dataclasses.replace(cfg, run_dir=str(tmp_path / "resumed"), total_steps=TINY.total_steps // 2)
    train(half)
    train(dataclasses.replace(half, total_steps=TINY.total_steps, resume=True))
    a, b = _final_state(cfg, cfg.run_dir), _final_state(cfg, half.run_dir)
    assert a.buffer.data.truncated is not None and a.buffer.data.truncated.shape == (1, TINY.buffer_size)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(x, y)
    assert _rows(half.run_dir) == _rows(cfg.run_dir)
    one_step = [r["critic_loss"] for r in _rows(straight[0])]
    assert [r["critic_loss"] for r in _rows(cfg.run_dir)] != one_step


def test_resume_without_saved_buffer_refills_it(tmp_path):
    cfg = dataclasses.replace(TINY, run_dir=str(tmp_path), total_steps=256, save_buffer=False)
    train(cfg)
    assert not os.path.isdir(tmp_path / "checkpoints" / "256" / "buffer")
    summary = train(dataclasses.replace(cfg, total_steps=384, resume=True))
    assert summary["env_steps"] == 384


def test_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    cfg = dataclasses.replace(TINY, run_dir=str(tmp_path), critic_lr=1e30, actor_lr=1e30,
                              checkpoint_every=128)
    with pytest.raises(TrainingDiverged, match=r"non-finite .* by env step \d+; the last good checkpoint \(128"):
        train(cfg)
    assert Checkpointer(str(tmp_path)).latest_step() == 128


def test_ctrl_c_saves_a_checkpoint_then_exits_cleanly(tmp_path):
    run_dir = tmp_path / "run"
    args = [sys.executable, "train.py", "--run-dir", str(run_dir), "--no-progress",
            "--total-steps", "10_000_000", "--checkpoint-every", "0"]
    preset = defaults_for(TINY.env)  # what train.py starts from; pass every difference
    for f in dataclasses.fields(TINY):
        value = getattr(TINY, f.name)
        if f.name not in ("total_steps", "checkpoint_every", "progress", "run_dir") and value != getattr(preset, f.name):
            args += [f"--{f.name.replace('_', '-')}", str(value)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ))
    metrics = run_dir / "metrics.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and not (metrics.exists() and metrics.read_text().count("\n") >= 2):
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert "interrupted: saved a checkpoint" in err
    step = Checkpointer(str(run_dir)).latest_step()
    assert step is not None and step >= 128


def test_a_background_compile_is_visible_until_it_finishes():
    """train.py leaves with os._exit while compile_in_flight(): otherwise a Ctrl-C during the
    evaluation program's compile ended the process with an abort (exit -6) after saving."""
    import threading

    from savgo_mjx.train_loop import _Background, compile_in_flight

    release = threading.Event()
    job = _Background(lambda: release.wait(30) and "compiled")
    assert compile_in_flight()
    release.set()
    assert job.result() == "compiled"
    deadline = time.time() + 10
    while compile_in_flight() and time.time() < deadline:
        time.sleep(0.01)
    assert not compile_in_flight()


def test_first_sigint_waits_for_the_chunk_and_a_second_stops_at_once():
    from savgo_mjx.train_loop import _sigint_between_chunks

    before = signal.getsignal(signal.SIGINT)
    with _sigint_between_chunks() as stop_requested:
        assert not stop_requested()
        os.kill(os.getpid(), signal.SIGINT)  # a chunk in flight keeps running
        time.sleep(0.1)
        assert stop_requested()
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1.0)
    assert signal.getsignal(signal.SIGINT) is before


def _member_rows(run_dir, member):
    return [r for r in _rows(run_dir) if r["member"] == member]


def test_seeds_train_side_by_side_and_each_matches_its_single_seed_run(straight, tmp_path):
    run_dir, _ = straight
    summary = train(dataclasses.replace(TINY, run_dir=str(tmp_path), num_seeds=2))
    assert summary["members"] == 2 and len(summary["eval_returns"]) == 2
    first, second = _member_rows(str(tmp_path), 0), _member_rows(str(tmp_path), 1)
    single = _rows(run_dir)
    assert [r["seed"] for r in first] == [0] * len(single) and {r["seed"] for r in second} == {1}
    # Member 0 is seed 0: the same run as the single-seed one (vmapped: same math, maybe another
    # summation order, hence a tolerance); member 1 is another seed and differs.
    for a, b in zip(first, single):
        assert a.keys() == b.keys()
        for k in a:
            if isinstance(a[k], float):
                np.testing.assert_allclose(a[k], b[k], rtol=1e-4, atol=1e-5, err_msg=k)
            elif k != "member":
                assert a[k] == b[k], k
    assert [r["critic_loss"] for r in second] != [r["critic_loss"] for r in first]


def test_each_member_gets_its_own_seed_and_swept_values():
    import envs

    cfg = dataclasses.replace(TINY, num_seeds=2, sweep=("lam=1,2", "actor_lr=1e-3,1e-4"))
    ts = Trainer(cfg, envs.make(cfg.env)).init_members(members(cfg))
    # Grid outer, seeds inner: (lam, actor_lr) = (1, 1e-3) x2, (1, 1e-4) x2, (2, 1e-3) x2, ...
    np.testing.assert_allclose(ts.hyper.lam, [1, 1, 1, 1, 2, 2, 2, 2])
    lr = ts.agent.actor_opt[-1].hyperparams["learning_rate"]
    np.testing.assert_allclose(lr, [1e-3, 1e-3, 1e-4, 1e-4] * 2, rtol=1e-6)
    np.testing.assert_allclose(ts.agent.critic_opt[-1].hyperparams["learning_rate"], TINY.critic_lr)
    actor = ts.agent.actor["params"]["mu"]["kernel"]
    assert not np.allclose(actor[0], actor[1])  # seeds 0 and 1
    np.testing.assert_array_equal(actor[0], actor[2])  # seed 0 in another setting
    np.testing.assert_array_equal(ts.env.obs[1], ts.env.obs[3])


def test_policy_frequency_updates_the_actor_once_in_every_that_many_updates():
    """G = 4 updates with --policy-frequency 2: the critic and trunk step 4 times, the actor and
    its temperature twice (Adam's step counts say so), for SAVGO and for SAC."""
    import envs

    for algo in ("savgo", "sac"):
        cfg = dataclasses.replace(TINY, algo=algo, updates_per_iter=4, policy_frequency=2)
        trainer = Trainer(cfg, envs.make(cfg.env))
        ts = trainer.init(0)
        agent, metrics = jax.jit(trainer.learn)(ts, jax.random.PRNGKey(1))
        steps = lambda opt: int(opt[-1].count)  # noqa: E731  inject_hyperparams counts its updates
        assert (steps(agent.critic_opt), steps(agent.embed_opt)) == (4, 4 if algo == "savgo" else 0)
        assert (steps(agent.actor_opt), steps(agent.alpha_opt)) == (2, 2)
        assert np.isfinite(metrics["actor_loss"]) and np.isfinite(metrics["critic_loss"])


def test_adam_betas_are_traced_per_member_and_change_the_updates():
    import envs

    cfg = dataclasses.replace(TINY, sweep=("adam_b2=0.999,0.95",))
    trainer = Trainer(cfg, envs.make(cfg.env))
    ts = trainer.init_members(members(cfg))
    for opt in (ts.agent.actor_opt, ts.agent.critic_opt, ts.agent.embed_opt, ts.agent.alpha_opt):
        np.testing.assert_allclose(opt[-1].hyperparams["b2"], [0.999, 0.95], rtol=1e-6)
        np.testing.assert_allclose(opt[-1].hyperparams["b1"], [0.9, 0.9], rtol=1e-6)
    # Same seed, same data: only b2 differs, and from Adam's second step on it shows.
    agent = jax.tree.map(lambda x: x[0], ts.agent)
    grads = jax.tree.map(jnp.ones_like, agent.critic)
    out = []
    for member in range(2):
        opt = jax.tree.map(lambda x: x[member], ts.agent.critic_opt)
        params = agent.critic
        for scale in (1e-3, 1e-4):  # below the gradient clip; a changing gradient
            g = jax.tree.map(lambda x: x * scale, grads)
            updates, opt = trainer.agent.critic_tx.update(g, opt, params)
            params = optax.apply_updates(params, updates)
        out.append(params)
    assert not all(np.allclose(a, b) for a, b in zip(jax.tree.leaves(out[0]), jax.tree.leaves(out[1])))


def test_gymnasium_evaluations_run_beside_training_and_score_the_snapshot(straight, tmp_path):
    """--eval-backend gymnasium: the same training rows as an on-device run, and at each
    evaluation point a row of its own whose return is that of the policy at that step in
    Gymnasium v5 (checked at the end, where the exported policy is that snapshot)."""
    from savgo_mjx.evaluate import episode_seed, run_seeded_episode
    from savgo_mjx.policy import load_policy, policy_path

    run_dir, _ = straight
    cfg = dataclasses.replace(TINY, run_dir=str(tmp_path), eval_backend="gymnasium", eval_workers=2)
    summary = train(cfg)
    rows = read_metrics(str(tmp_path))
    evals = [r for r in rows if r.get("eval_backend") == "gymnasium"]
    training = [r for r in rows if "sps" in r]
    assert [r["env_steps"] for r in evals] == [256, 512]
    assert all("eval_return" not in r for r in training)
    wall = {r["env_steps"]: r["wall_s"] for r in training}
    assert all(r["wall_s"] == wall[r["env_steps"]] for r in evals)  # when the snapshot was taken
    on_device = [{k: v for k, v in r.items() if not k.startswith("eval_")} for r in _rows(run_dir)]
    assert [r for r in _rows(str(tmp_path)) if "eval_backend" not in r] == on_device  # training is untouched
    policy = load_policy(policy_path(str(tmp_path), 0))
    assert policy.metadata["env_steps"] == 512
    episodes = [run_seeded_episode(policy, episode_seed(TINY.seed, 512, e)) for e in range(TINY.eval_envs)]
    assert evals[-1]["eval_return"] == pytest.approx(np.mean([ret for ret, _ in episodes]))
    assert evals[-1]["eval_length"] == pytest.approx(np.mean([n for _, n in episodes]))
    assert summary["eval_return"] == evals[-1]["eval_return"]
