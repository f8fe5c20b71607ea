"""Losses and networks against independent plain computations (numpy, explicit Python loops).

Nothing here reuses library math for the expected values: each reference is written out from
SAVGO.md section 3 on small random inputs.
"""

from __future__ import annotations

import math
import types

import numpy as np
import pytest

import jax
import jax.numpy as jnp

from savgo_mjx import losses as L
from savgo_mjx import networks as N

RTOL = 1e-5
ATOL = 1e-5


# Jitted entry points: one XLA compile per function instead of one per eager primitive (CPU time).
J = types.SimpleNamespace(
    **{
        name: jax.jit(getattr(L, name))
        for name in (
            "critic_target critic_loss pairwise_gap update_beta geometry_targets cosine_matrix "
            "geometry_loss kernel_actor_loss sac_actor_loss alpha_loss tau_schedule polyak"
        ).split()
    },
    value_signal=jax.jit(L.value_signal, static_argnums=4),
    kernel_weights=jax.jit(L.kernel_weights, static_argnums=3),
)


def jgrad(f, **kw):
    return jax.jit(jax.grad(f, **kw))


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def close(a, b, rtol=RTOL, atol=ATOL):
    np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), rtol=rtol, atol=atol)


# ------------------------------------------------------------------------------------------
# Critic
# ------------------------------------------------------------------------------------------
def test_critic_target_bootstraps_with_the_given_discount(rng):
    """y = R + discount (Q' - alpha logp'): discount 0 (terminated) leaves the reward alone;
    gamma^m (an m-step return, or a truncated episode) bootstraps. Which rows get which discount
    is replay's business (test_replay_and_normalize: truncation bootstraps, termination does not)."""
    B, gamma, alpha = 8, 0.97, 0.3
    r = rng.normal(size=B).astype(np.float32)
    q = rng.normal(size=B).astype(np.float32) * 10
    lp = rng.normal(size=B).astype(np.float32)
    steps = np.array([1, 1, 2, 3, 1, 3, 2, 1])
    term = np.array([0, 1, 0, 0, 1, 0, 1, 0], bool)
    discount = (gamma**steps * (1 - term)).astype(np.float32)
    want = [r[i] if term[i] else r[i] + gamma ** steps[i] * (q[i] - alpha * lp[i]) for i in range(B)]
    y = J.critic_target(r, discount, q, lp, alpha)
    close(y, want)
    close(np.asarray(y)[term], r[term])


def test_critic_loss_sums_two_mses_and_stops_target_gradient(rng):
    B = 6
    q = rng.normal(size=(B, 2)).astype(np.float32)
    y = rng.normal(size=B).astype(np.float32)
    want = 0.0
    for m in range(2):
        want += sum((q[b, m] - y[b]) ** 2 for b in range(B)) / B
    close(J.critic_loss(q, y), want)
    gy = jgrad(lambda y_: J.critic_loss(jnp.asarray(q), y_))(jnp.asarray(y))
    close(gy, np.zeros(B), atol=0)
    gq = jgrad(lambda q_: J.critic_loss(q_, jnp.asarray(y)))(jnp.asarray(q))
    close(gq, 2 * (q - y[:, None]) / B)


# ------------------------------------------------------------------------------------------
# Geometry
# ------------------------------------------------------------------------------------------
def test_value_signal_variants(rng):
    M, gamma = 7, 0.99
    r = rng.normal(size=M).astype(np.float32)
    q = rng.normal(size=M).astype(np.float32) * 5
    term = np.array([0, 1, 0, 1, 0, 0, 0], bool)
    want_b = [r[i] + (0.0 if term[i] else gamma * q[i]) for i in range(M)]
    close(J.value_signal(r, term, q, gamma, "bellman"), want_b)
    close(J.value_signal(r, term, q, gamma, "q"), q)
    with pytest.raises(ValueError):
        J.value_signal(r, term, q, gamma, "nope")


def test_pairwise_gap(rng):
    u = rng.normal(size=5).astype(np.float32)
    want = [[abs(float(u[i]) - float(u[j])) for j in range(5)] for i in range(5)]
    close(J.pairwise_gap(u), want)


def _quantile_linear(values, q):
    """Plain linear-interpolation quantile (numpy / torch default), by sorting by hand."""
    v = sorted(float(x) for x in values)
    pos = q * (len(v) - 1)
    lo = int(math.floor(pos))
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (pos - lo) * (v[hi] - v[lo])


def test_update_beta_is_ema_of_full_matrix_q95(rng):
    M, decay = 8, 0.9  # 64 entries: position 59.85, so the interpolation matters
    beta = 1.0
    beta_ref = 1.0
    for _ in range(3):
        u = rng.normal(size=M).astype(np.float32) * 3
        G = np.array([[abs(u[i] - u[j]) for j in range(M)] for i in range(M)], np.float32)
        entries = [G[i, j] for i in range(M) for j in range(M)]  # all M*M, diagonal included
        beta_ref = decay * beta_ref + (1 - decay) * (_quantile_linear(entries, 0.95) + 1e-6)
        beta = J.update_beta(beta, G, decay)
        close(beta, beta_ref)
    # default decay is 0.995
    close(J.update_beta(2.0, G), 0.995 * 2.0 + 0.005 * (_quantile_linear(entries, 0.95) + 1e-6))
    # the full-matrix statistic differs from an off-diagonal one (the choice is observable)
    offdiag = [G[i, j] for i in range(M) for j in range(M) if i != j]
    assert abs(_quantile_linear(offdiag, 0.95) - _quantile_linear(entries, 0.95)) > 1e-4


def _plain_targets(G, beta, lam, eta, gamma, term, next_cos):
    M = G.shape[0]
    Y = np.zeros((M, M))
    T = np.zeros((M, M))
    for i in range(M):
        for j in range(M):
            d = min(max(G[i, j] / beta, 0.0), 1.0)
            T[i, j] = 1.0 - 2.0 * d**lam
            Y[i, j] = (1 - eta) * T[i, j] + eta * gamma * (0.0 if term[i] else 1.0) * next_cos[i, j]
    return T, Y


def test_geometry_targets_T_and_Y_with_row_mask(rng):
    M, beta, lam, eta, gamma = 6, 2.0, 1.5, 0.5, 0.99
    u = rng.normal(size=M) * 2
    G = np.abs(u[:, None] - u[None, :]).astype(np.float32)
    assert (G / beta > 1).any() and ((G > 0) & (G / beta < 1)).any()  # both clip branches
    term = np.array([0, 1, 0, 0, 1, 0], bool)
    nc = rng.uniform(-1, 1, size=(M, M)).astype(np.float32)
    T, want = _plain_targets(G, beta, lam, eta, gamma, term, nc)
    Y = np.asarray(J.geometry_targets(G, beta, lam, eta, gamma, term, nc))
    close(Y, want)
    # eta = 0: Y is T (ablation A3); lam = 1: linear map (A5)
    close(J.geometry_targets(G, beta, lam, 0.0, gamma, term, nc), T)
    _, want1 = _plain_targets(G, beta, 1.0, eta, gamma, term, nc)
    close(J.geometry_targets(G, beta, 1.0, eta, gamma, term, nc), want1)
    # row i uses term_i (not term_j): terminated rows ignore next_cos, columns do not
    nc2 = nc.copy()
    nc2[1, :] += 0.5
    nc2[4, :] -= 0.5
    close(J.geometry_targets(G, beta, lam, eta, gamma, term, nc2), Y)
    nc3 = nc.copy()
    nc3[:, 1] += 0.5  # column of a terminated sample, live rows: must change
    Y3 = np.asarray(J.geometry_targets(G, beta, lam, eta, gamma, term, nc3))
    live = ~term
    assert np.all(np.abs(Y3[live, 1] - Y[live, 1]) > 0.2)


def test_cosine_matrix(rng):
    z = rng.normal(size=(4, 3)).astype(np.float32) * np.array([[1.0], [5.0], [0.1], [3.0]], np.float32)
    want = np.zeros((4, 4))
    for i in range(4):
        for j in range(4):
            want[i, j] = np.dot(z[i], z[j]) / (np.linalg.norm(z[i]) * np.linalg.norm(z[j]))
    close(J.cosine_matrix(z), want)


def _huber(x, d):
    return 0.5 * x * x if abs(x) <= d else d * (abs(x) - 0.5 * d)


def test_geometry_loss_offdiagonal_huber(rng):
    M, D, delta = 6, 5, 0.2
    z = rng.normal(size=(M, D)).astype(np.float32)
    Y = rng.uniform(-1, 1, size=(M, M)).astype(np.float32)
    total, n, n_lin, n_quad = 0.0, 0, 0, 0
    for i in range(M):
        for j in range(M):
            if i == j:
                continue
            s = np.dot(z[i], z[j]) / (np.linalg.norm(z[i]) * np.linalg.norm(z[j]))
            x = s - Y[i, j]
            n_lin += abs(x) > delta
            n_quad += abs(x) <= delta
            total += _huber(x, delta)
            n += 1
    assert n_lin > 0 and n_quad > 0  # both Huber branches exercised
    loss = J.geometry_loss(z, Y, delta)
    close(loss, total / n)
    close(J.geometry_loss(z, Y), total / n)  # default delta 0.2
    # the diagonal does not matter
    Y2 = Y.copy()
    np.fill_diagonal(Y2, rng.uniform(-5, 5, size=M))
    close(J.geometry_loss(z, Y2, delta), loss, rtol=0, atol=1e-7)
    # but an off-diagonal entry does
    Y3 = Y.copy()
    Y3[0, 1] += 0.7
    assert abs(float(J.geometry_loss(z, Y3, delta)) - float(loss)) > 1e-4


def test_geometry_loss_gradients(rng):
    M, D = 5, 4
    z = jnp.asarray(rng.normal(size=(M, D)), jnp.float32)
    Y = jnp.asarray(rng.uniform(-1, 1, size=(M, M)), jnp.float32)
    gY = jgrad(J.geometry_loss, argnums=1)(z, Y)
    close(gY, np.zeros((M, M)), atol=0)
    gz = jgrad(J.geometry_loss)(z, Y)
    assert np.all(np.isfinite(gz)) and float(jnp.abs(gz).max()) > 1e-4
    # the targets builder returns constants too
    gG = jgrad(lambda G: J.geometry_targets(G, 1.0, 1.5, 0.5, 0.99, jnp.zeros(M), Y).sum())(jnp.abs(Y))
    close(gG, np.zeros((M, M)), atol=0)


# ------------------------------------------------------------------------------------------
# Kernel actor
# ------------------------------------------------------------------------------------------
def test_kernel_weights_softmax_eps_mixing(rng):
    P, K, tau, eps = 3, 5, 0.4, 0.05
    cos = rng.uniform(-1, 1, size=(P, K)).astype(np.float32)
    cos[0, 2] = 1.3  # outside [-1, 1]: clipped to 1
    cos[1, 0] = -1.7
    want = np.zeros((P, K))
    for p in range(P):
        c = [min(max(float(x), -1.0), 1.0) for x in cos[p]]
        e = [math.exp(x / tau) for x in c]
        for k in range(K):
            want[p, k] = (1 - eps) * e[k] / sum(e) + eps / K
    W = np.asarray(J.kernel_weights(cos, tau, eps, "softmax"))
    close(W, want)
    close(W.sum(-1), np.ones(P))
    assert W.min() >= eps / K - 1e-7
    close(J.kernel_weights(cos, tau), want)  # default eps 0.05, mode softmax
    # temperature matters: lower tau is peakier
    assert np.asarray(J.kernel_weights(cos, 0.1, eps)).max() > W.max() + 0.05


def test_kernel_weights_uniform_and_argmax(rng):
    P, K = 4, 6
    cos = rng.uniform(-1, 1, size=(P, K)).astype(np.float32)
    close(J.kernel_weights(cos, 0.3, 0.05, "uniform"), np.full((P, K), 1.0 / K), rtol=0, atol=1e-7)
    Wa = np.asarray(J.kernel_weights(cos, 0.3, 0.05, "argmax"))
    for p in range(P):
        best = max(range(K), key=lambda k: cos[p, k])
        for k in range(K):
            assert Wa[p, k] == (1.0 if k == best else 0.0)
    c = rng.normal(size=(P, K)).astype(np.float32)

    def value_grad(mode):
        return jgrad(lambda cos_: jnp.sum(L.kernel_weights(cos_, 0.3, 0.05, mode) * c))(jnp.asarray(cos))

    for mode in ("uniform", "argmax"):  # no value gradient (documented for B1 and B4)
        close(value_grad(mode), np.zeros((P, K)), atol=0)
    assert float(jnp.abs(value_grad("softmax")).max()) > 1e-3
    with pytest.raises(ValueError):
        J.kernel_weights(cos, 0.3, 0.05, "nope")


def test_kernel_actor_loss_value_and_gradients(rng):
    P, K, alpha = 4, 3, 0.2
    lp = rng.normal(size=P).astype(np.float32)
    W = rng.dirichlet(np.ones(K), size=P).astype(np.float32)
    q = (rng.normal(size=(P, K)) * 10).astype(np.float32)
    want = 0.0
    for p in range(P):
        want += alpha * lp[p] - sum(W[p, k] * q[p, k] for k in range(K))
    want /= P
    close(J.kernel_actor_loss(lp, W, q, alpha), want)

    g_lp, g_W, g_q = jgrad(J.kernel_actor_loss, argnums=(0, 1, 2))(
        jnp.asarray(lp), jnp.asarray(W), jnp.asarray(q), alpha
    )
    close(g_q, np.zeros((P, K)), atol=0)
    close(g_lp, np.full(P, alpha / P))
    close(g_W, -q / P)
    # through W all the way to the cosines (the actor's only path to value)
    cos = jnp.asarray(rng.uniform(-0.9, 0.9, size=(P, K)), jnp.float32)
    g_cos = jgrad(lambda c: J.kernel_actor_loss(jnp.asarray(lp), J.kernel_weights(c, 0.5), jnp.asarray(q), alpha))(cos)
    assert float(jnp.abs(g_cos).max()) > 1e-2
    # alpha is a constant for the actor
    g_alpha = jgrad(J.kernel_actor_loss, argnums=3)(jnp.asarray(lp), jnp.asarray(W), jnp.asarray(q), jnp.float32(alpha))
    assert float(g_alpha) == 0.0


def test_sac_actor_and_alpha_losses(rng):
    B, alpha, H = 5, 0.3, -6.0
    lp = rng.normal(size=B).astype(np.float32)
    q = rng.normal(size=B).astype(np.float32)
    close(J.sac_actor_loss(lp, q, alpha), sum(alpha * lp[b] - q[b] for b in range(B)) / B)
    g_q = jgrad(J.sac_actor_loss, argnums=1)(jnp.asarray(lp), jnp.asarray(q), alpha)
    close(g_q, np.full(B, -1.0 / B))  # the SAC baseline keeps the dQ/da path
    log_alpha = 0.4
    close(J.alpha_loss(log_alpha, lp, H), -sum(log_alpha * (lp[b] + H) for b in range(B)) / B)
    g_la, g_lp = jgrad(J.alpha_loss, argnums=(0, 1))(jnp.float32(log_alpha), jnp.asarray(lp), H)
    close(g_la, -sum(lp[b] + H for b in range(B)) / B)
    close(g_lp, np.zeros(B), atol=0)


def test_tau_schedule():
    T = 200_000
    close(J.tau_schedule(0), 1.0)
    close(J.tau_schedule(T // 2), 0.65)
    close(J.tau_schedule(T // 4), 0.3 + 0.35 * (1 + math.cos(math.pi / 4)))
    close(J.tau_schedule(T), 0.3)
    close(J.tau_schedule(5 * T), 0.3)
    close(J.tau_schedule(50, 2.0, 0.5, 100), 1.25)
    for t in (0, 1, T, 10 * T):  # B9: fixed tau
        close(J.tau_schedule(t, anneal_steps=0), 1.0)
        close(J.tau_schedule(t, 0.7, 0.3, -5), 0.7)
    # monotone decreasing over the anneal
    ts = [float(J.tau_schedule(t)) for t in range(0, T + 1, T // 8)]
    assert all(a > b for a, b in zip(ts, ts[1:]))


def test_polyak(rng):
    tgt = {"a": np.ones(3, np.float32), "b": {"c": np.zeros((2, 2), np.float32)}}
    onl = {"a": rng.normal(size=3).astype(np.float32), "b": {"c": rng.normal(size=(2, 2)).astype(np.float32)}}
    out = J.polyak(tgt, onl, 0.005)
    for i in range(3):
        close(out["a"][i], 0.995 * 1.0 + 0.005 * onl["a"][i])
    close(out["b"]["c"], 0.005 * onl["b"]["c"])


def test_all_jit_with_traced_hyperparameters(rng):
    M = 6
    u = jnp.asarray(rng.normal(size=M), jnp.float32)
    term = jnp.asarray([0, 1, 0, 0, 0, 1], jnp.float32)
    nc = jnp.asarray(rng.uniform(-1, 1, size=(M, M)), jnp.float32)
    z = jnp.asarray(rng.normal(size=(M, 4)), jnp.float32)

    def f(beta, lam, eta, gamma, tau, eps, alpha, t, anneal):
        G = L.pairwise_gap(L.value_signal(u, term, u, gamma, "bellman"))
        b = L.update_beta(beta, G)
        Y = L.geometry_targets(G, b, lam, eta, gamma, term, nc)
        W = L.kernel_weights(nc, tau * L.tau_schedule(t, 1.0, 0.3, anneal), eps)
        y = L.critic_target(u, gamma * (1 - term), u, u, alpha)
        return L.geometry_loss(z, Y) + L.kernel_actor_loss(u, W, nc, alpha) + y.sum()

    args = (1.0, 1.5, 0.5, 0.99, 1.0, 0.05, 0.2, 1000, 200_000)
    traced = jax.jit(f)(*[jnp.float32(a) for a in args])
    constant = jax.jit(lambda: f(*args))()  # same program with Python-constant hyperparameters
    close(traced, constant)
    assert np.isfinite(float(traced))


# ------------------------------------------------------------------------------------------
# Networks. Parameters come from `jax.eval_shape(init)` filled with numpy noise (compiling the
# random initialisers costs seconds on CPU); only the critic's two-head init check runs `init`.
# ------------------------------------------------------------------------------------------
def _fake_params(module, *args, seed=0):
    shapes = jax.eval_shape(module.init, jax.random.PRNGKey(0), *args)
    r = np.random.default_rng(seed)

    def fill(s):
        scale = 1.0 / math.sqrt(s.shape[-2]) if len(s.shape) >= 2 else 0.3
        return (r.normal(size=s.shape) * scale).astype(np.float32)

    return jax.tree_util.tree_map(fill, shapes)


def _np_dense(p, x):
    return x @ np.asarray(p["kernel"], np.float64) + np.asarray(p["bias"], np.float64)


def _np_layer_norm(p, x, eps=1e-6):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * np.asarray(p["scale"], np.float64) + np.asarray(p["bias"], np.float64)


@jax.jit
def _sample_with_noise_and_grads(mu, log_std, key):
    """The library sample, the N(0, 1) draw it must have used, and d(sum a)/d(mu, log_std)."""
    a, lp = N.tanh_gaussian_sample(mu, log_std, key)
    xi = jax.random.normal(key, mu.shape, mu.dtype)
    g = jax.grad(lambda m_, l_: N.tanh_gaussian_sample(m_, l_, key)[0].sum(), argnums=(0, 1))(mu, log_std)
    return a, lp, xi, g


def test_tanh_gaussian_log_prob_change_of_variables(rng):
    A = 3
    mu = jnp.asarray(rng.normal(size=(4, A)) * 2, jnp.float32)
    log_std = jnp.asarray(rng.uniform(-2, 0.5, size=(4, A)), jnp.float32)
    key = jax.random.PRNGKey(7)
    a, lp, xi, (g_mu, g_ls) = _sample_with_noise_and_grads(mu, log_std, key)
    assert a.shape == (4, A) and lp.shape == (4,)
    xi = np.asarray(xi, np.float64)
    m, ls = np.asarray(mu, np.float64), np.asarray(log_std, np.float64)
    for r in range(4):
        tot = 0.0
        for d in range(A):
            s = math.exp(ls[r, d])
            x = m[r, d] + s * xi[r, d]
            close(a[r, d], math.tanh(x))
            # density of a = tanh(x): p_x(x) / |da/dx|, da/dx = 1 - tanh(x)^2 (naive form, float64)
            tot += -0.5 * ((x - m[r, d]) / s) ** 2 - math.log(s * math.sqrt(2 * math.pi))
            tot -= math.log(1.0 - math.tanh(x) ** 2)
        close(lp[r], tot, rtol=1e-4, atol=1e-4)
    # reparameterised: the action depends differentiably on mu and log_std
    close(g_mu, 1.0 - np.tanh(m + np.exp(ls) * xi) ** 2, rtol=1e-4, atol=1e-6)
    close(g_ls, (1.0 - np.tanh(m + np.exp(ls) * xi) ** 2) * np.exp(ls) * xi, rtol=1e-4, atol=1e-6)
    # stable in the saturated regime, where float32 1 - tanh(x)^2 rounds to 0 (log -> -inf)
    _, lp_big, _, _ = _sample_with_noise_and_grads(jnp.full((4, A), 12.0), jnp.full((4, A), -5.0), key)
    want = []
    for r in range(4):
        tot = 0.0
        for d in range(A):
            x = 12.0 + math.exp(-5.0) * xi[r, d]
            log_det = 2.0 * (math.log(2.0) - x - math.log1p(math.exp(-2.0 * x)))  # float64 reference
            tot += -0.5 * xi[r, d] ** 2 + 5.0 - 0.5 * math.log(2 * math.pi) - log_det
        want.append(tot)
    assert np.all(np.isfinite(np.asarray(lp_big)))
    close(lp_big, want, rtol=1e-4)
    close(jax.jit(N.deterministic_action)(mu), np.tanh(m))


def test_actor_heads_and_log_std_range(rng):
    O, A = 5, 3
    obs = np.asarray(rng.normal(size=(2, 7, O)), np.float32)
    actor = N.Actor(A, hidden=(16, 8))
    params = _fake_params(actor, obs)
    apply = jax.jit(actor.apply)
    mu, log_std = apply(params, obs)
    assert mu.shape == (2, 7, A) and log_std.shape == (2, 7, A)
    p = params["params"]
    h = np.asarray(obs, np.float64)
    for i in range(2):
        h = np.maximum(_np_dense(p[f"Dense_{i}"], h), 0.0)
    close(mu, _np_dense(p["mu"], h), rtol=1e-4, atol=1e-5)
    raw = _np_dense(p["log_std"], h)
    close(log_std, -5.0 + 3.0 * (np.tanh(raw) + 1.0), rtol=1e-4, atol=1e-5)
    # range: saturate the head both ways with large biases
    for bias, want in ((100.0, 1.0), (-100.0, -5.0)):
        p2 = jax.tree_util.tree_map(np.copy, params)
        p2["params"]["log_std"]["bias"] = np.full((A,), bias, np.float32)
        close(apply(p2, obs)[1], np.full((2, 7, A), want), atol=1e-5)
    big = np.asarray(apply(params, obs * 1e3)[1])
    assert big.min() >= -5.0 and big.max() <= 1.0 and big.max() - big.min() > 3.0
    # configurable bounds
    actor2 = N.Actor(A, hidden=(16, 8), log_std_min=-2.0, log_std_max=0.5)
    close(jax.jit(actor2.apply)(params, obs)[1], -2.0 + 2.5 * (np.tanh(raw) + 1.0) / 2.0, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("use_vmap", [False, True])
def test_double_critic_heads_differ_at_init(use_vmap):
    obs, act = jnp.ones((3, 4)), jnp.ones((3, 2))
    critic = N.DoubleCritic(hidden=(), use_vmap=use_vmap)  # no hidden layer: cheap to compile
    params = jax.jit(critic.init)(jax.random.PRNGKey(1), obs, act)
    leaves = jax.tree_util.tree_leaves(params)
    kernels = [np.asarray(x) for x in leaves if np.asarray(x).size > 2]
    if use_vmap:
        assert len(kernels) == 1 and kernels[0].shape[0] == 2
        k0, k1 = kernels[0][0], kernels[0][1]
    else:
        assert len(kernels) == 2
        k0, k1 = kernels
    assert np.abs(k0 - k1).max() > 1e-3  # independent initialisations


@pytest.mark.parametrize("use_vmap,layer_norm", [(False, False), (True, False), (False, True), (True, True)])
def test_double_critic_two_heads_forward(rng, use_vmap, layer_norm):
    O, A = 4, 2
    critic = N.DoubleCritic(hidden=(16, 16), layer_norm=layer_norm, use_vmap=use_vmap)
    obs = np.asarray(rng.normal(size=(3, 5, O)), np.float32)
    act = np.asarray(rng.uniform(-1, 1, size=(3, 5, A)), np.float32)
    params = _fake_params(critic, obs, act)
    q = np.asarray(jax.jit(critic.apply)(params, obs, act))
    assert q.shape == (3, 5, 2)
    assert np.abs(q[..., 0] - q[..., 1]).min() > 1e-6
    x = np.concatenate([obs, act], -1).astype(np.float64)
    p = params["params"]
    for m in range(2):
        sub = jax.tree_util.tree_map(lambda v: v[m], p["ensemble"]) if use_vmap else p[f"q{m}"]
        h = x
        for i in range(2):  # Dense -> (LayerNorm) -> ReLU
            h = _np_dense(sub[f"Dense_{i}"], h)
            if layer_norm:
                h = _np_layer_norm(sub[f"LayerNorm_{i}"], h)
            h = np.maximum(h, 0.0)
        close(q[..., m], _np_dense(sub["Dense_2"], h)[..., 0], rtol=1e-4, atol=1e-5)
        assert ("LayerNorm_0" in sub) == layer_norm


def test_embedding_shape_depth_and_unnormalised(rng):
    O, A = 6, 2
    emb = N.Embedding()
    obs = np.asarray(rng.normal(size=(4, 3, O)), np.float32)
    act = np.asarray(rng.uniform(-1, 1, size=(4, 3, A)), np.float32)
    params = _fake_params(emb, obs, act)
    p = params["params"]
    assert [p[f"Dense_{i}"]["kernel"].shape for i in range(4)] == [(O + A, 256), (256, 256), (256, 256), (256, 256)]
    assert len(p) == 4
    z = np.asarray(jax.jit(emb.apply)(params, obs, act))
    assert z.shape == (4, 3, 256)
    assert np.abs(np.linalg.norm(z, axis=-1) - 1.0).max() > 1e-2  # not normalised
    h = np.concatenate([obs, act], -1).astype(np.float64)
    for i in range(3):
        h = np.maximum(_np_dense(p[f"Dense_{i}"], h), 0.0)
    close(z, _np_dense(p["Dense_3"], h), rtol=1e-4, atol=1e-4)


def test_l2_normalize(rng):
    z = rng.normal(size=(3, 4)).astype(np.float32) * 7
    norm = jax.jit(N.l2_normalize)
    zn = np.asarray(norm(z))
    for i in range(3):
        close(zn[i], z[i] / math.sqrt(sum(float(x) ** 2 for x in z[i])))
    zero = jnp.zeros((3, 4))
    close(norm(zero), np.zeros((3, 4)), atol=0)
    g = jax.jit(jax.grad(lambda x: N.l2_normalize(x).sum()))(zero)
    assert np.all(np.isfinite(g))
