"""The SAVGO agent (and the SAC baseline): parameters, optimisers and one gradient update.

One update, in the spec's order (SAVGO.md section 3): critic -> geometry (embedding) -> actor ->
temperature -> Polyak targets. Every numeric hyperparameter is a traced array in `Hyper` or in an
optimiser state, so a second run with other values reuses the compiled program and a sweep is a
vmap over them. Sizes (K, M, P) and switches (algo, kernel, trunk) are static.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

from savgo_mjx import losses
from savgo_mjx.config import Config
from savgo_mjx.networks import Actor, DoubleCritic, Embedding, l2_normalize, tanh_gaussian_sample
from savgo_mjx.replay import Bootstrap, Transition, one_step_bootstrap

Params = Any


@struct.dataclass
class Hyper:
    """Traced scalar hyperparameters (each [] float32; [S] under a sweep vmap)."""

    gamma: jax.Array
    lam: jax.Array
    eta: jax.Array
    beta_decay: jax.Array
    fixed_beta: jax.Array
    huber_delta: jax.Array
    kernel_eps: jax.Array
    candidate_noise: jax.Array
    target_noise: jax.Array
    tau_start: jax.Array
    tau_end: jax.Array
    tau_anneal_steps: jax.Array
    target_rate: jax.Array
    embed_target_rate: jax.Array
    target_entropy: jax.Array

    @staticmethod
    def from_config(cfg: Config, action_size: int) -> "Hyper":
        target_entropy = -float(action_size) if cfg.target_entropy is None else cfg.target_entropy
        f = lambda v: jnp.asarray(v, jnp.float32)  # noqa: E731
        return Hyper(
            gamma=f(cfg.gamma), lam=f(cfg.lam), eta=f(cfg.eta), beta_decay=f(cfg.beta_decay),
            fixed_beta=f(1.0 if cfg.fixed_beta is None else cfg.fixed_beta),
            huber_delta=f(cfg.huber_delta), kernel_eps=f(cfg.kernel_eps),
            candidate_noise=f(cfg.candidate_noise), target_noise=f(cfg.target_noise),
            tau_start=f(cfg.tau_start), tau_end=f(cfg.tau_end),
            tau_anneal_steps=f(cfg.tau_anneal_steps), target_rate=f(cfg.target_rate),
            embed_target_rate=f(cfg.target_rate if cfg.embed_target_rate is None else cfg.embed_target_rate),
            target_entropy=f(target_entropy),
        )


@struct.dataclass
class Rates:
    """Traced optimiser settings and initial temperature ([] float32 each; [S] for S members):
    inputs of the init program, so that other values reuse its compile too."""

    actor_lr: jax.Array
    critic_lr: jax.Array
    embedding_lr: jax.Array
    alpha_lr: jax.Array
    alpha_init: jax.Array
    adam_b1: jax.Array
    adam_b2: jax.Array

    @staticmethod
    def from_config(cfg: Config) -> "Rates":
        f = lambda v: jnp.asarray(v, jnp.float32)  # noqa: E731
        return Rates(actor_lr=f(cfg.actor_lr), critic_lr=f(cfg.critic_lr),
                     embedding_lr=f(cfg.embedding_lr), alpha_lr=f(cfg.alpha_lr),
                     alpha_init=f(cfg.alpha_init), adam_b1=f(cfg.adam_b1), adam_b2=f(cfg.adam_b2))


@struct.dataclass
class AgentState:
    actor: Params
    critic: Params
    critic_target: Params
    embed: Params
    embed_target: Params
    log_alpha: jax.Array  # []
    beta: jax.Array  # [] the EMA scale of value gaps
    actor_opt: optax.OptState
    critic_opt: optax.OptState
    embed_opt: optax.OptState
    alpha_opt: optax.OptState


def _optimizer(cfg: Config, weight_decay: float = 0.0) -> optax.GradientTransformation:
    """Adam with global-norm clipping; learning rate and betas live in the optimiser state (traced).

    Weight decay is added to the gradient before Adam, as torch's Adam(weight_decay=...) does in
    the reference code.
    """
    adam = optax.inject_hyperparams(optax.adam)(learning_rate=0.0)
    decay = optax.add_decayed_weights(weight_decay) if weight_decay > 0 else optax.identity()
    return optax.chain(optax.clip_by_global_norm(cfg.grad_clip), decay, adam)


def with_adam(opt_state: optax.OptState, lr, b1, b2) -> optax.OptState:
    """Sets the learning rate and betas held by the inject_hyperparams state at the end of the
    chain (scalars or traced arrays)."""
    *rest, adam_state = opt_state
    f = lambda v: jnp.asarray(v, jnp.float32)  # noqa: E731
    hyper = dict(adam_state.hyperparams, learning_rate=f(lr), b1=f(b1), b2=f(b2))
    return (*rest, adam_state._replace(hyperparams=hyper))


class Agent:
    """The networks and update rule for one config; holds no state of its own."""

    def __init__(self, cfg: Config, observation_size: int, action_size: int,
                 axis_name: str | None = None):
        """`cfg` holds the sizes one shard works on; with `axis_name` (data-parallel training,
        see trainer.py) gradients and beta are averaged over that named axis, so every shard
        applies the same update and the parameters stay identical."""
        self.cfg = cfg
        self.axis_name = axis_name
        self.observation_size = observation_size
        self.action_size = action_size
        h = cfg.hidden
        ha, hc = cfg.actor_hidden or h, cfg.critic_hidden or h
        self.actor = Actor(action_size, hidden=(ha, ha), log_std_max=cfg.log_std_max)
        self.critic = DoubleCritic(hidden=(hc, hc), layer_norm=cfg.critic_layer_norm)
        self.embedding = Embedding(hidden=(h, h, h), out=h)
        self.actor_tx = _optimizer(cfg)
        self.critic_tx = _optimizer(cfg, cfg.critic_weight_decay)
        self.embed_tx = _optimizer(cfg)
        self.alpha_tx = _optimizer(cfg)

    # --- init and acting ---------------------------------------------------------------------
    def init(self, key: jax.Array, rates: Rates | None = None) -> AgentState:
        """Fresh parameters and optimiser states; `rates` default to the config's."""
        rates = Rates.from_config(self.cfg) if rates is None else rates
        k_actor, k_critic, k_embed = jax.random.split(key, 3)
        obs = jnp.zeros((1, self.observation_size))
        act = jnp.zeros((1, self.action_size))
        actor = self.actor.init(k_actor, obs)
        critic = self.critic.init(k_critic, obs, act)
        embed = self.embedding.init(k_embed, obs, act)
        log_alpha = jnp.log(rates.alpha_init)
        betas = (rates.adam_b1, rates.adam_b2)
        return AgentState(
            actor=actor, critic=critic, critic_target=critic, embed=embed, embed_target=embed,
            log_alpha=log_alpha, beta=jnp.ones((), jnp.float32),
            actor_opt=with_adam(self.actor_tx.init(actor), rates.actor_lr, *betas),
            critic_opt=with_adam(self.critic_tx.init(critic), rates.critic_lr, *betas),
            embed_opt=with_adam(self.embed_tx.init(embed), rates.embedding_lr, *betas),
            alpha_opt=with_adam(self.alpha_tx.init(log_alpha), rates.alpha_lr, *betas),
        )

    def act(self, actor_params: Params, obs: jax.Array, key: jax.Array) -> jax.Array:
        """Stochastic action [..., A] for normalised obs [..., O]."""
        mu, log_std = self.actor.apply(actor_params, obs)
        return tanh_gaussian_sample(mu, log_std, key)[0]

    def act_deterministic(self, actor_params: Params, obs: jax.Array) -> jax.Array:
        return jnp.tanh(self.actor.apply(actor_params, obs)[0])

    def _sample(self, actor_params: Params, obs: jax.Array, key: jax.Array):
        mu, log_std = self.actor.apply(actor_params, obs)
        return tanh_gaussian_sample(mu, log_std, key)

    # --- one gradient update -------------------------------------------------------------------
    def _mean_over_shards(self, tree):
        return tree if self.axis_name is None else jax.lax.pmean(tree, self.axis_name)

    def _apply(self, tx: optax.GradientTransformation, grads, opt_state, params):
        updates, opt_state = tx.update(self._mean_over_shards(grads), opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    def update(
        self, st: AgentState, hp: Hyper, batch: Transition, env_steps: jax.Array, key: jax.Array,
        bootstrap: Bootstrap | None = None, update_actor: bool = True,
    ) -> tuple[AgentState, dict[str, jax.Array]]:
        """One update on a batch of B transitions whose observations are already normalised.

        `bootstrap` is the critic's TD target for those rows (an n-step return from the replay
        buffer, its next_obs normalised too); None means the one-step target of `batch`. The
        geometry loss always uses the one-step transition: its value signal and temporal mixing
        are defined on (s, a, r, s'). With `update_actor` False (static: the policy delay of
        cfg.policy_frequency) the actor and temperature are left as they are, and so are their
        metrics: only the critic, embedding and targets move. Its matmuls run at
        cfg.update_precision (a trace-time scope: the env step around it stays float32)."""
        with jax.default_matmul_precision(self.cfg.update_precision):
            return self._update(st, hp, batch, env_steps, key, bootstrap, update_actor)

    def _update(self, st, hp, batch, env_steps, key, bootstrap, update_actor):
        cfg = self.cfg
        boot = one_step_bootstrap(batch, hp.gamma) if bootstrap is None else bootstrap
        k_critic, k_geo, k_actor = jax.random.split(key, 3)
        alpha = jnp.exp(st.log_alpha)
        metrics: dict[str, jax.Array] = {}

        # Critic: soft Bellman target from the target critics; truncation bootstraps.
        next_action, next_log_prob = self._sample(st.actor, boot.next_obs, k_critic)
        next_q = self.critic.apply(st.critic_target, boot.next_obs, next_action).min(-1)
        y = losses.critic_target(boot.reward, boot.discount, next_q, next_log_prob, alpha)

        def critic_loss_fn(params):
            q = self.critic.apply(params, batch.obs, batch.action)
            return losses.critic_loss(q, y), q.mean()

        (critic_loss, q_mean), grads = jax.value_and_grad(critic_loss_fn, has_aux=True)(st.critic)
        critic, critic_opt = self._apply(self.critic_tx, grads, st.critic_opt, st.critic)
        metrics.update(critic_loss=critic_loss, q_mean=q_mean)

        # Geometry: cosine of embeddings tracks value gaps on an M x M sub-batch.
        embed, embed_opt, beta = st.embed, st.embed_opt, st.beta
        if cfg.algo == "savgo" and cfg.trunk == "geometry":
            geo = jax.tree.map(lambda x: x[: cfg.geometry_batch], batch)
            q_min = self.critic.apply(st.critic_target, geo.obs, geo.action).min(-1)
            u = losses.value_signal(geo.reward, geo.terminated, q_min, hp.gamma, cfg.value_signal)
            gap = losses.pairwise_gap(u)
            if cfg.fixed_beta is None:
                beta = self._mean_over_shards(losses.update_beta(st.beta, gap, hp.beta_decay))
            else:
                beta = hp.fixed_beta
            next_a, _ = self._sample(st.actor, geo.next_obs, k_geo)
            noise = hp.target_noise * jax.random.normal(jax.random.fold_in(k_geo, 1), next_a.shape)
            next_a = jnp.clip(next_a + noise, -1.0, 1.0)
            next_cos = losses.cosine_matrix(self.embedding.apply(st.embed_target, geo.next_obs, next_a))
            targets = losses.geometry_targets(gap, beta, hp.lam, hp.eta, hp.gamma, geo.terminated, next_cos)

            def geometry_loss_fn(params):
                z = self.embedding.apply(params, geo.obs, geo.action)
                return losses.geometry_loss(z, targets, hp.huber_delta)

            geometry_loss, grads = jax.value_and_grad(geometry_loss_fn)(st.embed)
            embed, embed_opt = self._apply(self.embed_tx, grads, st.embed_opt, st.embed)
            metrics.update(geometry_loss=geometry_loss)

        actor, actor_opt, log_alpha, alpha_opt = st.actor, st.actor_opt, st.log_alpha, st.alpha_opt
        if update_actor:
            (actor, actor_opt, embed, embed_opt, log_alpha, alpha_opt), actor_metrics = self._update_actor(
                st, hp, batch, env_steps, k_actor, critic, embed, embed_opt)
            metrics.update(actor_metrics)
        metrics.update(beta=beta)

        # Polyak targets (a random frozen trunk stays as it was drawn).
        critic_target = losses.polyak(st.critic_target, critic, hp.target_rate)
        embed_target = st.embed_target
        if cfg.algo == "savgo" and cfg.trunk != "random_frozen":
            embed_target = losses.polyak(st.embed_target, embed, hp.embed_target_rate)

        new = AgentState(
            actor=actor, critic=critic, critic_target=critic_target, embed=embed,
            embed_target=embed_target, log_alpha=log_alpha, beta=beta, actor_opt=actor_opt,
            critic_opt=critic_opt, embed_opt=embed_opt, alpha_opt=alpha_opt,
        )
        return new, metrics

    def _update_actor(self, st, hp, batch, env_steps, key, critic, embed, embed_opt):
        """The actor step, then the temperature step; returns the new (actor, actor_opt, embed,
        embed_opt, log_alpha, alpha_opt) and their metrics. `critic`, `embed` are this update's
        new critic and trunk (the SAC actor and the kernel's anchor use them); the actor-only
        ablation trains the trunk here too."""
        cfg = self.cfg
        alpha = jnp.exp(st.log_alpha)
        tau = losses.tau_schedule(env_steps, hp.tau_start, hp.tau_end, hp.tau_anneal_steps)
        if cfg.algo == "savgo":
            actor_loss_fn = self._kernel_actor_loss(st, hp, batch, embed, alpha, tau, key)
        else:
            actor_loss_fn = self._sac_actor_loss(batch, critic, alpha, key)
        train_trunk = cfg.algo == "savgo" and cfg.trunk == "actor_only"
        argnums = (0, 1) if train_trunk else 0
        (actor_loss, aux), grads = jax.value_and_grad(actor_loss_fn, argnums, has_aux=True)(st.actor, embed)
        if train_trunk:
            grads, embed_grads = grads
            embed, embed_opt = self._apply(self.embed_tx, embed_grads, embed_opt, embed)
        actor, actor_opt = self._apply(self.actor_tx, grads, st.actor_opt, st.actor)
        log_prob = jax.lax.stop_gradient(aux.pop("log_prob"))
        metrics = dict(actor_loss=actor_loss, tau=tau, entropy=-log_prob.mean(), **aux)

        # Temperature.
        alpha_loss, grad = jax.value_and_grad(losses.alpha_loss)(st.log_alpha, log_prob, hp.target_entropy)
        log_alpha, alpha_opt = self._apply(self.alpha_tx, grad, st.alpha_opt, st.log_alpha)
        metrics.update(alpha_loss=alpha_loss, alpha=jnp.exp(log_alpha))
        return (actor, actor_opt, embed, embed_opt, log_alpha, alpha_opt), metrics

    def _kernel_actor_loss(self, st, hp, batch, embed, alpha, tau, key):
        """SAVGO's actor: the value reaches the actor only through the kernel weights W."""
        cfg = self.cfg
        obs = batch.obs[: cfg.actor_batch]  # [P, O]
        k_cand, k_noise, k_anchor = jax.random.split(key, 3)
        # K candidates around the policy, scored by the target trunk and target critics. The
        # actor and the obs half of each first layer run once per state, not once per candidate.
        mu, log_std = self.actor.apply(st.actor, obs)  # [P, A]
        shape = (obs.shape[0], cfg.num_candidates, mu.shape[-1])
        cand, _ = tanh_gaussian_sample(jnp.broadcast_to(mu[:, None], shape),
                                       jnp.broadcast_to(log_std[:, None], shape), k_cand)  # [P, K, A]
        cand = jnp.clip(cand + hp.candidate_noise * jax.random.normal(k_noise, cand.shape), -1.0, 1.0)
        cand = jax.lax.stop_gradient(cand)
        z_cand, q_cand = self._score_candidates(st, obs[:, None], cand)  # [P, K, D], [P, K]

        def loss_fn(actor_params, embed_params):
            anchor, log_prob = self._sample(actor_params, obs, k_anchor)  # [P, A], [P]
            z0 = l2_normalize(self.embedding.apply(embed_params, obs, anchor))  # [P, D]
            cos = jnp.clip(jnp.einsum("pd,pkd->pk", z0, z_cand), -1.0, 1.0)
            weights = losses.kernel_weights(cos, tau, hp.kernel_eps, cfg.kernel)
            loss = losses.kernel_actor_loss(log_prob, weights, q_cand, alpha)
            return loss, {
                "log_prob": log_prob,
                "kernel_max_weight": weights.max(-1).mean(),
                # Why a kernel is flat when it is: the trunk does not separate the candidates
                # (cosine spread) or the critics do not (Q spread). The gain over uniform
                # weights is the value the kernel adds, the signal the actor follows.
                "kernel_cos_spread": cos.std(-1).mean(),
                "candidate_q_spread": q_cand.std(-1).mean(),
                "kernel_value_gain": jnp.mean(jnp.sum(weights * q_cand, -1) - q_cand.mean(-1)),
            }

        return loss_fn

    def _score_candidates(self, st: AgentState, obs: jax.Array, cand: jax.Array):
        """Unit target-trunk embeddings [P, K, D] and target min-Q [P, K] (float32) of K candidate
        actions [P, K, A] per state (obs [P, 1, O], broadcast against the candidates).

        Nothing here is differentiated, so the trunk's P x K pass may run in cfg.candidate_dtype:
        in bfloat16 its matmuls (3/5 of the pass) use a GPU's tensor cores, while the global
        float32 matmul precision (which MJX needs) stays everywhere else. The critics stay float32
        (also under cfg.update_precision tensorfloat32): the actor's signal is q_k minus its mean
        over the K candidates, about 0.5 on Humanoid, while bfloat16's 8-bit mantissa resolves a
        Q of ~150 only to 1.0 (TF32 rounds each matmul input to 10 bits). The trunk's rounding
        (~2^-9 of each unit embedding) is small against the candidates' embedding differences."""
        dtype = jnp.dtype(self.cfg.candidate_dtype)
        cast = lambda tree: jax.tree.map(lambda x: x.astype(dtype), tree)  # noqa: E731
        z = self.embedding.apply(cast(st.embed_target), cast(obs), cast(cand))
        with jax.default_matmul_precision("float32"):  # whatever cfg.update_precision says
            q = self.critic.apply(st.critic_target, obs, cand).min(-1)
        return l2_normalize(z.astype(jnp.float32)), q

    def _sac_actor_loss(self, batch, critic, alpha, key):
        """SAC's actor: the reparameterised gradient of min-Q with respect to the action."""

        def loss_fn(actor_params, embed_params):
            del embed_params
            action, log_prob = self._sample(actor_params, batch.obs, key)
            q_min = self.critic.apply(critic, batch.obs, action).min(-1)
            return losses.sac_actor_loss(log_prob, q_min, alpha), {"log_prob": log_prob}

        return loss_fn

