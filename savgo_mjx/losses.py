"""SAVGO losses (SAVGO.md section 3) as pure functions on arrays.

No networks, buffers or environments in here: callers run the networks and pass the arrays. Every
function is jit-compatible. Hyperparameters that may be swept or scheduled (gamma, alpha, lam,
eta, tau, eps, beta, decay, ...) may be traced scalars: nothing branches in Python on their
values. ``variant`` and ``mode`` are static strings.

Shapes: ``B`` minibatch, ``M`` geometry sub-batch, ``D`` embedding size, ``P`` actor states,
``K`` candidate actions per state.

Gradient conventions (each is the loss's own business, so callers cannot get it wrong):
* ``critic_loss`` stops the gradient of its target ``y``;
* ``geometry_loss`` stops the gradient of ``Y``; ``geometry_targets``, ``value_signal`` and
  ``update_beta`` return constants;
* ``kernel_actor_loss`` stops the gradient of ``q``; its value path is ``W`` only;
* ``sac_actor_loss`` keeps the gradient of ``q_min`` (the reparameterised dQ/da path);
* both actor losses treat ``alpha`` as a constant, and ``alpha_loss`` treats ``log_prob`` as one.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from savgo_mjx.networks import l2_normalize

_sg = jax.lax.stop_gradient

BETA_QUANTILE = 0.95
BETA_EPS = 1e-6


def _f(x) -> jax.Array:
    """Bool/int/float array -> float32 array (for ``terminated`` and scalar hyperparameters)."""
    return jnp.asarray(x, dtype=jnp.float32)


# --------------------------------------------------------------------------------------------
# Critic
# --------------------------------------------------------------------------------------------
def critic_target(reward, discount, next_q_min, next_log_prob, alpha) -> jax.Array:
    """Soft TD target ``y = reward + discount (min_m Qbar_m(s', a') - alpha log pi(a'|s'))``.

    Args: ``reward [B]``, ``discount [B]``: ``gamma (1 - term)`` for one step, ``gamma^m (1 -
    term_m)`` for an m-step return (``replay.Bootstrap``); only termination zeroes it: a time-limit
    truncation bootstraps from the true final observation. ``next_q_min [B]``, ``next_log_prob
    [B]`` at that observation, scalar ``alpha``. Returns ``y [B]`` (no gradient).
    """
    return _sg(reward + discount * (next_q_min - alpha * next_log_prob))


def critic_loss(q: jax.Array, y: jax.Array) -> jax.Array:
    """``sum_m mean_b (q[b, m] - y[b])^2``: ``q [B, 2]``, ``y [B]`` (constant) -> scalar."""
    return jnp.sum(jnp.mean(jnp.square(q - _sg(y)[:, None]), axis=0))


# --------------------------------------------------------------------------------------------
# Geometry (embedding) loss
# --------------------------------------------------------------------------------------------
def value_signal(reward, terminated, q_min, gamma, variant: str = "bellman") -> jax.Array:
    """Per-sample value signal ``u [M]`` (no gradient).

    ``variant="bellman"``: ``u = r + gamma (1 - term) q_min`` (current reference);
    ``variant="q"``: ``u = q_min`` (older variant). ``reward, terminated, q_min: [M]`` with
    ``q_min = min_m Qbar_m(s_i, a_i)`` from the target critics.
    """
    if variant == "bellman":
        u = reward + gamma * (1.0 - _f(terminated)) * q_min
    elif variant == "q":
        u = q_min
    else:
        raise ValueError(f"unknown value_signal variant {variant!r} (expected 'bellman' or 'q')")
    return _sg(u)


def pairwise_gap(u: jax.Array) -> jax.Array:
    """``G_ij = |u_i - u_j|``: ``u [M] -> G [M, M]`` (symmetric, zero diagonal)."""
    return jnp.abs(u[:, None] - u[None, :])


def update_beta(beta, G: jax.Array, decay=0.995) -> jax.Array:
    """EMA of the 0.95-quantile of the value gaps: ``beta' = decay beta + (1-decay)(q95 + 1e-6)``.

    Args: ``beta []``, ``G [M, M]``, ``decay`` scalar. Returns ``beta' []`` (no gradient).

    The quantile is taken over ALL ``M*M`` entries of ``G`` (both symmetric halves and the ``M``
    zeros of the diagonal), with linear interpolation: exactly ``torch.quantile(G, 0.95)`` of the
    reference implementation and the spec's "0.95-quantile of G". Excluding the diagonal would
    only raise the effective level from about ``0.95 - 0.05/M`` to 0.95 of the off-diagonal gaps
    (negligible for M >= 256); we keep the reference's statistic so beta is comparable with it.
    The ablation "fixed beta = 1" (A4) is the caller not calling this function.
    """
    q = jnp.quantile(_sg(G).reshape(-1), BETA_QUANTILE)
    return _sg(decay * beta + (1.0 - decay) * (q + BETA_EPS))


def geometry_targets(G, beta, lam, eta, gamma, terminated, next_cos) -> jax.Array:
    """Target cosines ``Y [M, M]`` (no gradient).

    ``Delta = clip(G / beta, 0, 1)``, ``T = 1 - 2 Delta**lam``,
    ``Y_ij = (1 - eta) T_ij + eta gamma (1 - term_i) S'_ij`` (row ``i`` masked by ``term_i``).
    Args: ``G [M, M]``, scalars ``beta``, ``lam`` (curvature), ``eta`` (temporal mixing),
    ``gamma``; ``terminated [M]``; ``next_cos [M, M]`` = cos(zbar(s'_i, a'_i), zbar(s'_j, a'_j)).
    """
    delta = jnp.clip(G / beta, 0.0, 1.0)
    T = 1.0 - 2.0 * jnp.power(delta, lam)
    row = gamma * (1.0 - _f(terminated))[:, None]
    return _sg((1.0 - eta) * T + eta * row * next_cos)


def cosine_matrix(z: jax.Array) -> jax.Array:
    """``S_ij = <z_i/|z_i|, z_j/|z_j|>``: ``z [M, D]`` (unnormalised) -> ``S [M, M]``."""
    zn = l2_normalize(z)
    return zn @ zn.T


def _huber(x: jax.Array, delta) -> jax.Array:
    """optax.huber_loss form: ``0.5 x^2`` if ``|x| <= delta`` else ``delta (|x| - 0.5 delta)``."""
    ax = jnp.abs(x)
    quad = jnp.minimum(ax, delta)
    return 0.5 * jnp.square(quad) + delta * (ax - quad)


def geometry_loss(z: jax.Array, Y: jax.Array, huber_delta=0.2) -> jax.Array:
    """Mean over ``i != j`` of ``Huber_delta(S_ij - Y_ij)`` with ``S = cosine_matrix(z)``.

    Args: ``z [M, D]`` online embeddings, unnormalised; ``Y [M, M]`` targets (gradient stopped
    here); ``huber_delta`` scalar. Returns a scalar. The diagonal (S_ii = 1) is excluded.
    """
    m = z.shape[0]
    S = cosine_matrix(z)
    h = _huber(S - _sg(Y), huber_delta)
    off = 1.0 - jnp.eye(m, dtype=h.dtype)
    return jnp.sum(h * off) / (m * (m - 1))


# --------------------------------------------------------------------------------------------
# Kernel actor
# --------------------------------------------------------------------------------------------
KERNEL_MODES = ("softmax", "uniform", "argmax")


def kernel_weights(cos: jax.Array, tau, eps=0.05, mode: str = "softmax") -> jax.Array:
    """Candidate weights ``W [P, K]`` from anchor-candidate cosines ``cos [P, K]`` (rows sum to 1).

    * ``"softmax"`` (SAVGO): ``(1 - eps) softmax(clip(cos, -1, 1) / tau) + eps / K``; the
      gradient flows to ``cos`` (this is the actor's only path to value).
    * ``"uniform"`` (ablation B1): ``1/K`` everywhere; no gradient and no value signal, so the
      actor only maximises entropy and must fail to learn.
    * ``"argmax"`` (ablation B4): one-hot at ``argmax_k cos`` (the candidate most similar to the
      anchor gets weight 1, no epsilon mixing), with NO gradient through ``W``. This is the
      literal reading of the reference. A straight-through estimator was rejected: with a
      softmax backward its actor gradient is *identical* to the full method's (q is constant, so
      d/dtheta sum_k W_st q_k = d/dtheta sum_k softmax_k q_k) and the ablation would only change
      the logged loss. Any hard selection is piecewise constant in ``cos``, so B4 leaves the
      actor with the entropy gradient alone (same actor gradient as B1), which is the finding
      such an ablation tests: the smooth kernel is what carries the value signal.
    """
    k = cos.shape[-1]
    if mode == "softmax":
        w = jax.nn.softmax(jnp.clip(cos, -1.0, 1.0) / tau, axis=-1)
        return (1.0 - eps) * w + eps / k
    if mode == "uniform":
        return jnp.full(cos.shape, 1.0 / k, dtype=jnp.result_type(cos, jnp.float32))
    if mode == "argmax":
        return _sg(jax.nn.one_hot(jnp.argmax(cos, axis=-1), k, dtype=jnp.result_type(cos, jnp.float32)))
    raise ValueError(f"unknown kernel mode {mode!r} (expected one of {KERNEL_MODES})")


def kernel_actor_loss(log_prob0: jax.Array, W: jax.Array, q: jax.Array, alpha) -> jax.Array:
    """``mean_s [ alpha log pi(a0|s) - sum_k W_sk q_sk ]``.

    Args: ``log_prob0 [P]`` of the reparameterised anchor action, ``W [P, K]`` kernel weights
    (carry the gradient), ``q [P, K]`` = min_m Qbar_m(s, a_k) (gradient stopped here: the critic
    is never differentiated w.r.t. the action), ``alpha`` scalar (constant). Returns a scalar.
    """
    return jnp.mean(_sg(alpha) * log_prob0 - jnp.sum(W * _sg(q), axis=-1))


def sac_actor_loss(log_prob: jax.Array, q_min: jax.Array, alpha) -> jax.Array:
    """Plain SAC actor loss ``mean(alpha log pi(a|s) - min_m Q_m(s, a))``, ``a`` reparameterised.

    ``log_prob [B]``, ``q_min [B]`` (gradient kept: it is the dQ/da path), ``alpha`` constant.
    """
    return jnp.mean(_sg(alpha) * log_prob - q_min)


def alpha_loss(log_alpha, log_prob: jax.Array, target_entropy) -> jax.Array:
    """Temperature loss ``-mean(log_alpha * stop_grad(log_prob + target_entropy))``.

    The log-alpha form (SB3 / the original SAC code): its gradient w.r.t. ``log_alpha`` is
    ``-mean(logp + H_target)``, independent of alpha's current magnitude, so the step size of
    ``log_alpha`` does not shrink as alpha -> 0 (the ``alpha * (...)`` form, e.g. CleanRL, scales
    it by alpha). ``log_alpha []``, ``log_prob [B]``, ``target_entropy`` scalar (default -|A|).
    """
    return -jnp.mean(log_alpha * _sg(log_prob + target_entropy))


def tau_schedule(env_steps, tau_start=1.0, tau_end=0.3, anneal_steps=200_000) -> jax.Array:
    """Kernel temperature: cosine annealing from ``tau_start`` to ``tau_end`` over ``anneal_steps``.

    ``tau(t) = tau_end + 0.5 (tau_start - tau_end) (1 + cos(pi min(t / T, 1)))``; constant
    ``tau_end`` after T. ``anneal_steps <= 0`` means a fixed ``tau_start`` (ablation B9). All
    arguments may be traced; returns a float32 scalar.
    """
    t = _f(env_steps)
    T = _f(anneal_steps)
    frac = jnp.clip(t / jnp.maximum(T, 1.0), 0.0, 1.0)
    tau = tau_end + 0.5 * (tau_start - tau_end) * (1.0 + jnp.cos(jnp.pi * frac))
    return jnp.where(T > 0, tau, _f(tau_start))


def polyak(target, online, rate):
    """Soft target update ``target <- (1 - rate) target + rate online`` on matching pytrees."""
    return jax.tree_util.tree_map(lambda t, o: t + rate * (o - t), target, online)
