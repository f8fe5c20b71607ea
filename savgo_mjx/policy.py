"""Trained policies as small portable files, and a numpy forward pass that needs neither JAX nor
the training code.

    from savgo_mjx.policy import load_policy
    policy = load_policy("runs/x/policies/member-0.npz")
    ctrl = policy(obs)                       # obs [..., O] -> action [..., A] in the env's ctrlrange
    a = policy.agent_action(obs)             # the same action in the agent's [-1, 1] units

Training writes RUN_DIR/policies/member-<i>.npz for every member next to each checkpoint (the
files always hold the newest checkpoint's policies). A file holds the deterministic actor (ReLU
hidden layers, then the pre-tanh mean head `mu`; the log-std head is not needed and not stored),
the running observation statistics, the actuator ctrlrange, and a JSON `metadata` entry (env,
Gymnasium id, sizes, seed, env steps...). It is a plain `.npz`: `np.load(path)` reads it in any
numpy program; nothing in it needs pickle.

The forward pass is exactly `Agent.act_deterministic` on normalised observations:

    x = (obs - obs_mean) / sqrt(obs_var + 1e-8)        (identity when obs_norm is off)
    x = relu(x @ W_i + b_i)  for each hidden layer
    a = tanh(x @ W_mu + b_mu)                           in [-1, 1]
    ctrl = low + (clip(a, -1, 1) + 1) / 2 * (high - low) as envs.MujocoEnv.scale_action

computed in float32. Runs trained before export existed (or whose files were deleted) can be
exported from their latest checkpoint:

    python -m savgo_mjx.policy RUN_DIR
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import sys
from typing import Any, Optional

import numpy as np

FORMAT = "savgo-mjx-policy/1"
POLICY_DIR = "policies"
LEGACY_OBS_NORM = {"obs_norm_eps": 1e-8, "obs_std_floor": 0.0, "obs_clip": None}
"""How files written before the normaliser had a std floor and a clip standardise (their metadata
has none of these keys): (obs - mean) / sqrt(var + 1e-8), unclipped."""


def policy_path(run_dir: str, member: int) -> str:
    return os.path.join(run_dir, POLICY_DIR, f"member-{member}.npz")


def policy_files(run_dir: str) -> dict[int, str]:
    """{member index: path} of the exported policies in RUN_DIR/policies (empty if none)."""
    folder = os.path.join(run_dir, POLICY_DIR)
    if not os.path.isdir(folder):
        return {}
    found = {}
    for name in os.listdir(folder):
        match = re.fullmatch(r"member-(\d+)\.npz", name)
        if match:
            found[int(match.group(1))] = os.path.join(folder, name)
    return dict(sorted(found.items()))


@dataclasses.dataclass(frozen=True)
class Policy:
    """The deterministic policy of one member: numpy in, numpy out, any leading batch axes."""

    hidden: tuple[tuple[np.ndarray, np.ndarray], ...]
    """(kernel [in, out], bias [out]) of each ReLU hidden layer."""
    mu: tuple[np.ndarray, np.ndarray]
    """(kernel [h, A], bias [A]) of the pre-tanh mean head."""
    obs_mean: Optional[np.ndarray]
    """[O] running mean, None when the run trained without observation normalisation."""
    obs_var: Optional[np.ndarray]
    ctrl_low: np.ndarray
    """[A] actuator ctrlrange: the Gymnasium env's action_space.low / high."""
    ctrl_high: np.ndarray
    metadata: dict[str, Any]

    @property
    def observation_size(self) -> int:
        return int(self.metadata["observation_size"])

    @property
    def action_size(self) -> int:
        return int(self.metadata["action_size"])

    @property
    def env(self) -> str:
        """Our registry name, e.g. "hopper"."""
        return self.metadata["env"]

    @property
    def gym_id(self) -> str:
        """The Gymnasium id of the task, e.g. "Hopper-v5"."""
        return self.metadata["gym_id"]

    def normalize(self, obs: np.ndarray) -> np.ndarray:
        """obs [..., O] -> the standardised float32 observation the actor was trained on."""
        obs = np.asarray(obs, np.float32)
        if obs.shape[-1:] != (self.observation_size,):
            raise ValueError(f"{self.gym_id} policy expects observations [..., {self.observation_size}], "
                             f"got shape {obs.shape}")
        if self.obs_mean is None:
            return obs
        rule = {k: self.metadata.get(k, v) for k, v in LEGACY_OBS_NORM.items()}
        var = np.maximum(self.obs_var + np.float32(rule["obs_norm_eps"]), np.float32(rule["obs_std_floor"]) ** 2)
        z = (obs - self.obs_mean) / np.sqrt(var)
        return z if rule["obs_clip"] is None else np.clip(z, -rule["obs_clip"], rule["obs_clip"])

    def agent_action(self, obs: np.ndarray) -> np.ndarray:
        """obs [..., O] -> tanh(mu) [..., A] in [-1, 1] (Agent.act_deterministic)."""
        x = self.normalize(obs)
        for kernel, bias in self.hidden:
            x = np.maximum(x @ kernel + bias, np.float32(0.0))
        kernel, bias = self.mu
        return np.tanh(x @ kernel + bias)

    def to_ctrl(self, action: np.ndarray) -> np.ndarray:
        """[-1, 1] -> ctrlrange, linearly (envs.MujocoEnv.scale_action)."""
        action = np.clip(np.asarray(action, np.float32), -1.0, 1.0)
        return self.ctrl_low + (action + np.float32(1.0)) * np.float32(0.5) * (self.ctrl_high - self.ctrl_low)

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        """obs [..., O] -> action [..., A] in the Gymnasium env's own units (its ctrlrange)."""
        return self.to_ctrl(self.agent_action(obs))


def make_policy(actor_params: dict, obs_mean: Optional[np.ndarray], obs_var: Optional[np.ndarray],
                ctrl_low: np.ndarray, ctrl_high: np.ndarray, metadata: dict[str, Any]) -> Policy:
    """The Policy of a single member's flax actor params ({"params": {"Dense_0": ..., "mu":
    ...}}) and observation statistics (None without observation normalisation), in memory."""
    params = actor_params["params"]
    names = sorted((k for k in params if re.fullmatch(r"Dense_\d+", k)), key=lambda k: int(k[6:]))
    f32 = lambda x: np.asarray(x, np.float32)  # noqa: E731
    hidden = tuple((f32(params[k]["kernel"]), f32(params[k]["bias"])) for k in names)
    metadata = dict(metadata, format=FORMAT, obs_norm=obs_mean is not None,
                    hidden_sizes=[int(bias.shape[0]) for _, bias in hidden])
    return Policy(hidden=hidden, mu=(f32(params["mu"]["kernel"]), f32(params["mu"]["bias"])),
                  obs_mean=None if obs_mean is None else f32(obs_mean),
                  obs_var=None if obs_var is None else f32(obs_var),
                  ctrl_low=f32(ctrl_low), ctrl_high=f32(ctrl_high), metadata=metadata)


def save_policy(path: str, policy: Policy) -> str:
    """Writes `policy` to a policy file. Written to a temporary name, then renamed: a reader never
    sees half a file."""
    arrays: dict[str, np.ndarray] = {}
    for i, (kernel, bias) in enumerate(policy.hidden):
        arrays[f"hidden{i}_kernel"], arrays[f"hidden{i}_bias"] = kernel, bias
    arrays["mu_kernel"], arrays["mu_bias"] = policy.mu
    if policy.obs_mean is not None:
        arrays["obs_mean"], arrays["obs_var"] = policy.obs_mean, policy.obs_var
    arrays["ctrl_low"], arrays["ctrl_high"] = policy.ctrl_low, policy.ctrl_high
    arrays["metadata"] = np.asarray(json.dumps(policy.metadata))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
    os.replace(tmp, path)
    return path


def load_policy(path: str) -> Policy:
    """Reads a policy file (numpy only). ValueError if it is not one; FileNotFoundError if absent."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no policy file {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        metadata = json.loads(str(arrays.pop("metadata")))
    except (OSError, ValueError, KeyError) as e:
        raise ValueError(f"{path} is not a savgo-mjx policy file ({e})") from None
    if metadata.get("format") != FORMAT:
        raise ValueError(f"{path} has format {metadata.get('format')!r}; this code reads {FORMAT!r}")
    n = len(metadata["hidden_sizes"])
    return Policy(
        hidden=tuple((arrays[f"hidden{i}_kernel"], arrays[f"hidden{i}_bias"]) for i in range(n)),
        mu=(arrays["mu_kernel"], arrays["mu_bias"]),
        obs_mean=arrays.get("obs_mean"), obs_var=arrays.get("obs_var"),
        ctrl_low=arrays["ctrl_low"], ctrl_high=arrays["ctrl_high"], metadata=metadata,
    )


def load_policies(run_dir: str) -> dict[int, Policy]:
    """{member: Policy} of every exported member of a run."""
    return {i: load_policy(path) for i, path in policy_files(run_dir).items()}


# --- export from training (needs JAX and the training code) -----------------------------------
def member_policies(cfg, env, ts) -> list[Policy]:
    """The deterministic policy of every member of an [S]-leading TrainState `ts` of the run
    configured by `cfg` (its members give seeds and swept values) on `env` (an envs.MujocoEnv),
    copied to host memory."""
    import jax

    import envs

    from savgo_mjx import __version__, normalize
    from savgo_mjx.config import members, parse_sweep

    member_cfgs = members(cfg)
    actor, stats, env_steps = jax.device_get((ts.agent.actor, ts.obs_stats, ts.env_steps))
    if len(env_steps) != len(member_cfgs):
        raise ValueError(f"the state has {len(env_steps)} members, the config {len(member_cfgs)}")
    ctrl = np.asarray(env.mj_model.actuator_ctrlrange, np.float32)
    swept = list(parse_sweep(cfg.sweep))
    run = os.path.basename(os.path.abspath(cfg.run_dir)) if cfg.run_dir else None
    policies = []
    for i, member in enumerate(member_cfgs):
        metadata = {
            "env": cfg.env, "gym_id": envs.GYMNASIUM_IDS.get(cfg.env), "physics": cfg.physics,
            "algo": cfg.algo, "ablation": cfg.ablation,
            "observation_size": int(env.observation_size), "action_size": int(env.action_size),
            "member": i, "seed": member.seed, "swept": {k: getattr(member, k) for k in swept},
            "env_steps": int(env_steps[i]), "obs_count": float(stats.count[i]),
            "run": run, "savgo_mjx_version": __version__,
            "obs_norm_eps": 0.0, "obs_std_floor": normalize.STD_FLOOR, "obs_clip": normalize.CLIP,
        }
        policies.append(make_policy(
            jax.tree.map(lambda x: x[i], actor),
            stats.mean[i] if cfg.obs_norm else None, stats.var[i] if cfg.obs_norm else None,
            ctrl[:, 0], ctrl[:, 1], metadata,
        ))
    return policies


def export_policies(run_dir: str, cfg, env, ts) -> list[str]:
    """Writes RUN_DIR/policies/member-<i>.npz for every member of `ts` (see member_policies).
    Returns the paths."""
    policies = member_policies(dataclasses.replace(cfg, run_dir=run_dir), env, ts)
    return [save_policy(policy_path(run_dir, i), p) for i, p in enumerate(policies)]


def read_config(run_dir: str):
    """The run's Config from RUN_DIR/config.json (list fields back to tuples)."""
    from savgo_mjx.config import Config

    with open(os.path.join(run_dir, "config.json")) as f:
        values = json.load(f)
    return Config(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def export_from_checkpoint(run_dir: str, step: Optional[int] = None) -> list[str]:
    """Exports every member of the run's latest (or `step`) checkpoint."""
    import jax

    from savgo_mjx.checkpoint import Checkpointer
    from savgo_mjx.config import members
    from savgo_mjx.trainer import Trainer, make_env

    cfg = read_config(run_dir)
    trainer = Trainer(cfg, make_env(cfg))
    member_cfgs = members(cfg)
    like = jax.eval_shape(lambda: trainer.init_members(member_cfgs))  # shapes only: nothing allocated
    checkpointer = Checkpointer(run_dir)
    try:
        ts = checkpointer.restore(like, step)
    finally:
        checkpointer.close()
    return export_policies(run_dir, trainer.cfg, trainer.env, ts)


def main(argv: Optional[list[str]] = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m savgo_mjx.policy",
                                     description="Export every member's policy from a run's checkpoint.")
    parser.add_argument("run_dir")
    parser.add_argument("--step", type=int, help="checkpoint (env steps); default the latest")
    args = parser.parse_args(argv)
    if not os.path.isfile(os.path.join(args.run_dir, "config.json")):
        print(f"error: {args.run_dir} is not a run directory (no config.json)", file=sys.stderr)
        return 2
    try:
        paths = export_from_checkpoint(args.run_dir, args.step)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for path in paths:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
