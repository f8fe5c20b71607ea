"""Gradient flow through one full SAVGO / SAC update (the composed agent, not the pure losses)."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from savgo_mjx.agent import Agent, Hyper
from savgo_mjx.config import Config
from savgo_mjx.replay import Bootstrap, Transition, one_step_bootstrap

OBS, ACT, B = 5, 2, 32
SMALL = Config(hidden=32, batch_size=B, geometry_batch=16, actor_batch=8, num_candidates=8)


def _batch(seed: int = 0) -> Transition:
    r = np.random.default_rng(seed)
    return Transition(
        obs=jnp.asarray(r.normal(size=(B, OBS)), jnp.float32),
        action=jnp.asarray(r.uniform(-1, 1, size=(B, ACT)), jnp.float32),
        reward=jnp.asarray(r.normal(size=B), jnp.float32),
        next_obs=jnp.asarray(r.normal(size=(B, OBS)), jnp.float32),
        terminated=jnp.asarray(r.random(B) < 0.2, jnp.float32),
    )


def _update(cfg: Config, hyper_changes: dict | None = None, poison_action_grad: bool = False):
    agent = Agent(cfg, OBS, ACT)
    if poison_action_grad:
        _poison_critic_action_gradient(agent)
    state = agent.init(jax.random.PRNGKey(0))
    hyper = Hyper.from_config(cfg, ACT).replace(**(hyper_changes or {}))
    update = jax.jit(agent.update)
    return update(state, hyper, _batch(), jnp.int32(10_000), jax.random.PRNGKey(1))


def _poison_critic_action_gradient(agent: Agent) -> None:
    """Makes any derivative of Q with respect to its action input NaN (values unchanged)."""

    @jax.custom_jvp
    def poisoned(a):
        return a

    @poisoned.defjvp
    def _(primals, tangents):
        return primals[0], tangents[0] * jnp.nan

    apply = agent.critic.apply
    agent.critic = dataclasses.replace(agent.critic)  # own instance: patch it alone
    object.__setattr__(agent.critic, "apply", lambda params, obs, action: apply(params, obs, poisoned(action)))


def _finite(tree) -> bool:
    return all(bool(jnp.isfinite(x).all()) for x in jax.tree.leaves(tree))


def _same(a, b) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_savgo_actor_never_differentiates_q_with_respect_to_the_action():
    new, metrics = _update(SMALL, poison_action_grad=True)
    assert _finite(new.actor) and _finite(new.critic) and _finite(new.embed)
    assert np.isfinite(metrics["actor_loss"])


def test_sac_actor_does_differentiate_q_with_respect_to_the_action():
    """The poison is real: the SAC baseline's reparameterised gradient hits it."""
    new, _ = _update(dataclasses.replace(SMALL, algo="sac"), poison_action_grad=True)
    assert not _finite(new.actor)


@pytest.mark.parametrize("trunk", ["geometry", "actor_only"])
def test_actor_loss_updates_only_the_actor(trunk):
    """Changing only what the actor loss sees (kernel temperature) must change the actor and
    nothing else; under ablation A2 (trunk trained by the actor) the trunk changes too."""
    cfg = dataclasses.replace(SMALL, trunk=trunk)
    hot, _ = _update(cfg, {"tau_start": jnp.float32(1.0), "tau_end": jnp.float32(1.0)})
    cold, _ = _update(cfg, {"tau_start": jnp.float32(0.05), "tau_end": jnp.float32(0.05)})
    assert not _same(hot.actor, cold.actor)
    assert _same(hot.critic, cold.critic) and _same(hot.critic_target, cold.critic_target)
    assert _same(hot.log_alpha, cold.log_alpha) or trunk == "actor_only"
    if trunk == "geometry":
        assert _same(hot.embed, cold.embed) and _same(hot.embed_target, cold.embed_target)
    else:
        assert not _same(hot.embed, cold.embed)


def test_critic_and_embedding_targets_follow_their_own_polyak_rates():
    """target' = target + rate (online' - target); the embedding's rate defaults to --target-rate."""
    agent = Agent(SMALL, OBS, ACT)
    state = agent.init(jax.random.PRNGKey(0))
    update = jax.jit(agent.update)  # the rates are traced: one compile for both configs

    def rates(cfg):
        new, _ = update(state, Hyper.from_config(cfg, ACT), _batch(), jnp.int32(10_000), jax.random.PRNGKey(1))
        out = []
        for target, online in (("critic_target", "critic"), ("embed_target", "embed")):
            ratios = []
            for t0, t1, o1 in zip(*(map(np.asarray, jax.tree.leaves(tree)) for tree in
                                    (getattr(state, target), getattr(new, target), getattr(new, online)))):
                step = o1 - t0
                ratios.append(((t1 - t0) / step)[np.abs(step) > 1e-4])  # parameters that moved
            out.append(np.concatenate(ratios))
        return out

    critic, embed = rates(dataclasses.replace(SMALL, target_rate=0.1))
    np.testing.assert_allclose(critic, 0.1, rtol=1e-3)
    np.testing.assert_allclose(embed, 0.1, rtol=1e-3)
    critic, embed = rates(dataclasses.replace(SMALL, target_rate=0.1, embed_target_rate=0.5))
    np.testing.assert_allclose(critic, 0.1, rtol=1e-3)
    np.testing.assert_allclose(embed, 0.5, rtol=1e-3)


def test_random_frozen_trunk_never_changes():
    cfg = dataclasses.replace(SMALL, trunk="random_frozen")
    agent = Agent(cfg, OBS, ACT)
    state = agent.init(jax.random.PRNGKey(0))
    new, metrics = jax.jit(agent.update)(state, Hyper.from_config(cfg, ACT), _batch(), jnp.int32(0),
                                   jax.random.PRNGKey(1))
    assert _same(new.embed, state.embed) and _same(new.embed_target, state.embed_target)
    assert "geometry_loss" not in metrics
    assert not _same(new.actor, state.actor)


def test_uniform_kernel_gives_the_actor_no_value_signal():
    """B1: with uniform weights the actor loss does not depend on the candidates' values, so
    scaling every reward (hence every Q) leaves the actor's update unchanged."""
    cfg = dataclasses.replace(SMALL, kernel="uniform")
    agent = Agent(cfg, OBS, ACT)
    state = agent.init(jax.random.PRNGKey(0))
    hyper = Hyper.from_config(cfg, ACT)
    # Different critic targets: shift the target critics' output bias.
    shifted = jax.tree.map(lambda x: x, state)
    shifted = shifted.replace(critic_target=jax.tree.map(lambda x: x + 0.3, state.critic_target))
    update = jax.jit(agent.update)
    a, _ = update(state, hyper, _batch(), jnp.int32(0), jax.random.PRNGKey(1))
    b, _ = update(shifted, hyper, _batch(), jnp.int32(0), jax.random.PRNGKey(1))
    np.testing.assert_allclose(
        np.concatenate([np.ravel(x) for x in jax.tree.leaves(a.actor)]),
        np.concatenate([np.ravel(x) for x in jax.tree.leaves(b.actor)]), rtol=0, atol=1e-6)
    # ...while the softmax kernel's actor update does depend on them.
    cfg = dataclasses.replace(SMALL, kernel="softmax")
    agent = Agent(cfg, OBS, ACT)
    update = jax.jit(agent.update)
    a, _ = update(state, hyper, _batch(), jnp.int32(0), jax.random.PRNGKey(1))
    b, _ = update(shifted, hyper, _batch(), jnp.int32(0), jax.random.PRNGKey(1))
    assert not _same(a.actor, b.actor)


def test_kernel_diagnostics_report_what_the_kernel_adds_over_uniform_weights():
    uniform = _update(dataclasses.replace(SMALL, kernel="uniform"))[1]
    cold = _update(SMALL, {"tau_start": jnp.float32(0.01), "tau_end": jnp.float32(0.01)})[1]
    np.testing.assert_allclose(uniform["kernel_max_weight"], 1.0 / SMALL.num_candidates, rtol=1e-6)
    assert abs(float(uniform["kernel_value_gain"])) < 1e-6
    assert abs(float(cold["kernel_value_gain"])) > 1e-4
    assert float(cold["kernel_max_weight"]) > 2.0 / SMALL.num_candidates
    # Same keys, same candidates and critics: the spreads do not depend on the kernel.
    for key in ("kernel_cos_spread", "candidate_q_spread"):
        assert float(uniform[key]) > 0
        np.testing.assert_allclose(uniform[key], cold[key], rtol=1e-5)


def test_critic_learns_from_the_given_bootstrap_and_none_means_one_step():
    agent = Agent(SMALL, OBS, ACT)
    state = agent.init(jax.random.PRNGKey(0))
    hyper = Hyper.from_config(SMALL, ACT)
    update = jax.jit(agent.update)
    batch, steps, key = _batch(), jnp.int32(10_000), jax.random.PRNGKey(1)
    default, _ = update(state, hyper, batch, steps, key)
    explicit, _ = update(state, hyper, batch, steps, key, one_step_bootstrap(batch, hyper.gamma))
    assert _same(default, explicit)
    three_step = Bootstrap(reward=batch.reward * 2.5, next_obs=batch.next_obs[::-1],
                           discount=hyper.gamma**3 * (1.0 - batch.terminated))
    other, _ = update(state, hyper, batch, steps, key, three_step)
    assert not _same(default.critic, other.critic)
    # The geometry loss and the kernel actor read the one-step batch and the target critics only.
    assert _same(default.embed, other.embed) and _same(default.actor, other.actor)


def test_network_widths_and_log_std_range_follow_the_config():
    cfg = dataclasses.replace(SMALL, actor_hidden=16, critic_hidden=48)
    agent = Agent(cfg, OBS, ACT)
    state = agent.init(jax.random.PRNGKey(0))
    assert state.actor["params"]["Dense_0"]["kernel"].shape == (OBS, 16)
    assert state.critic["params"]["q0"]["Dense_1"]["kernel"].shape == (48, 48)
    assert state.embed["params"]["Dense_0"]["kernel"].shape == (OBS + ACT, SMALL.hidden)
    assert agent.actor.log_std_max == SMALL.log_std_max == 1.0
    assert Agent(dataclasses.replace(cfg, log_std_max=0.0), OBS, ACT).actor.log_std_max == 0.0
    new, _ = jax.jit(agent.update)(state, Hyper.from_config(cfg, ACT), _batch(), jnp.int32(10_000),
                                   jax.random.PRNGKey(1))
    assert _finite(new) and not _same(new.critic, state.critic)


def test_bfloat16_candidate_scoring_keeps_the_candidates_q_differences_exact():
    full = Agent(SMALL, OBS, ACT)
    half = Agent(dataclasses.replace(SMALL, candidate_dtype="bfloat16"), OBS, ACT)
    state = full.init(jax.random.PRNGKey(0))
    # Humanoid-sized values: Q ~ 150, where bfloat16's spacing is 1.0, while the K candidates of
    # one state differ by ~0.5 (docs/TUNING.md F11). Shift both target critics' outputs there.
    flat = traverse_util.flatten_dict(state.critic_target)
    flat = {k: v + 150.0 if k[-1] == "bias" and v.shape == (1,) else v for k, v in flat.items()}
    state = state.replace(critic_target=traverse_util.unflatten_dict(flat))
    r = np.random.default_rng(3)
    obs = jnp.asarray(r.normal(size=(8, 1, OBS)), jnp.float32)
    cand = jnp.asarray(r.uniform(-1, 1, size=(8, 16, ACT)), jnp.float32)
    z32, q32 = jax.jit(full._score_candidates)(state, obs, cand)
    z16, q16 = jax.jit(half._score_candidates)(state, obs, cand)
    assert z16.dtype == q16.dtype == jnp.float32
    assert float(jnp.abs(q32).min()) > 100.0
    # What the actor follows: each candidate's Q minus its state's mean, exact in both formats.
    gap32, gap16 = q32 - q32.mean(-1, keepdims=True), q16 - q16.mean(-1, keepdims=True)
    assert float(gap32.std()) > 0.01
    np.testing.assert_allclose(gap16, gap32, atol=1e-4 * float(gap32.std()))
    # In bfloat16 such a Q would be rounded by more than the differences themselves.
    rounded = q32.astype(jnp.bfloat16).astype(jnp.float32)
    assert float(jnp.abs(rounded - q32).max()) > 0.1 * float(gap32.std())
    jaxpr = str(jax.make_jaxpr(half._score_candidates)(state, obs, cand))
    dots = [line for line in jaxpr.splitlines() if "dot_general" in line]
    assert any("bf16" in line for line in dots) and any("bf16" not in line for line in dots)
    assert "bf16" not in str(jax.make_jaxpr(full._score_candidates)(state, obs, cand))
    # The trunk's unit embeddings keep ~3 significant digits.
    np.testing.assert_allclose(z16, z32, atol=0.02)
    assert not np.array_equal(np.asarray(z16), np.asarray(z32))
    new, _ = jax.jit(half.update)(state, Hyper.from_config(SMALL, ACT), _batch(), jnp.int32(10_000),
                                  jax.random.PRNGKey(1))
    assert _finite(new) and not _same(new.actor, state.actor)


@pytest.mark.parametrize("algo", ["savgo", "sac"])
def test_a_critic_only_update_leaves_the_actor_and_temperature_alone(algo):
    """The policy delay's other updates (--policy-frequency): critic, embedding and targets
    move exactly as in a full update; the actor, its temperature and their optimisers do not."""
    cfg = dataclasses.replace(SMALL, algo=algo)
    agent = Agent(cfg, OBS, ACT)
    state = agent.init(jax.random.PRNGKey(0))
    args = (state, Hyper.from_config(cfg, ACT), _batch(), jnp.int32(10_000), jax.random.PRNGKey(1))
    full, full_metrics = jax.jit(agent.update)(*args)
    critic_only, metrics = jax.jit(lambda *a: agent.update(*a, update_actor=False))(*args)
    for name in ("actor", "actor_opt", "log_alpha", "alpha_opt"):
        assert _same(getattr(critic_only, name), getattr(state, name)), name
        assert not _same(getattr(full, name), getattr(state, name)), name
    # Two programs: XLA may fuse them differently, so equal to float32 rounding, not bitwise.
    for name in ("critic", "critic_target", "critic_opt", "embed", "embed_target", "beta"):
        for a, b in zip(jax.tree.leaves(getattr(critic_only, name)), jax.tree.leaves(getattr(full, name))):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7, err_msg=name)
    assert "actor_loss" not in metrics and "alpha" not in metrics
    np.testing.assert_allclose(metrics["critic_loss"], full_metrics["critic_loss"], rtol=1e-6)


def _dot_precisions(lowered_text: str) -> dict[str, int]:
    """How many dot_generals of a lowered program carry each precision level."""
    levels = {}
    for line in lowered_text.splitlines():
        if "dot_general" in line and "precision = [" in line:
            level = line.split("precision = [")[1].split(",")[0]
            levels[level] = levels.get(level, 0) + 1
    return levels


@pytest.mark.parametrize("algo", ["savgo", "sac"])
def test_update_precision_scopes_the_update_and_keeps_candidate_q_in_float32(algo):
    counts = {}
    for precision in ("float32", "tensorfloat32"):
        cfg = dataclasses.replace(SMALL, algo=algo, update_precision=precision)
        agent = Agent(cfg, OBS, ACT)
        state = agent.init(jax.random.PRNGKey(0))
        args = (state, Hyper.from_config(cfg, ACT), _batch(), jnp.int32(10_000), jax.random.PRNGKey(1))
        counts[precision] = _dot_precisions(jax.jit(agent.update).lower(*args).as_text())
    # float32: every matmul of the update at full precision, whatever jax's global default is.
    assert set(counts["float32"]) == {"HIGHEST"}
    # tensorfloat32 (jax's HIGH): all of it but SAVGO's candidate critic pass (the twin target
    # critics' forward on P x K candidates: obs half, action half, two more layers, per head).
    tf32 = counts["tensorfloat32"]
    assert tf32.get("HIGH", 0) > 0
    assert tf32.get("HIGHEST", 0) == (8 if algo == "savgo" else 0)
    assert sum(tf32.values()) == sum(counts["float32"].values())
    assert jax.config.jax_default_matmul_precision != "tensorfloat32"  # the scope did not leak


def test_candidate_scoring_runs_the_trunk_at_the_update_precision_and_the_critics_in_float32():
    agent = Agent(SMALL, OBS, ACT)
    state = agent.init(jax.random.PRNGKey(0))
    obs, cand = jnp.zeros((4, 1, OBS)), jnp.zeros((4, 8, ACT))

    def score(st, o, c):
        with jax.default_matmul_precision("tensorfloat32"):
            return agent._score_candidates(st, o, c)

    levels = _dot_precisions(jax.jit(score).lower(state, obs, cand).as_text())
    # Trunk: obs half, action half, 3 more layers; critics: 2 heads x (2 halves + 2 layers).
    assert levels == {"HIGH": 5, "HIGHEST": 8}
