"""MJX ports of the Gymnasium MuJoCo v5 tasks.

    env = envs.make("humanoid", physics="v5")
    state = env.reset(jax.random.key(0)); state = env.step(state, action)
"""
from __future__ import annotations

from typing import Any

from envs import cpu_linalg

cpu_linalg.install()  # before any program is lowered: see envs/cpu_linalg.py

from envs.base import PHYSICS, MujocoEnv, State
from envs.ant import Ant
from envs.humanoid import Humanoid
from envs.half_cheetah import HalfCheetah
from envs.hopper import Hopper
from envs.inverted_double_pendulum import InvertedDoublePendulum
from envs.inverted_pendulum import InvertedPendulum
from envs.reacher import Reacher
from envs.swimmer import Swimmer
from envs.walker2d import Walker2d
from envs.wrappers import VecEnv, VecState

REGISTRY: dict[str, type[MujocoEnv]] = {
    "inverted_pendulum": InvertedPendulum,
    "inverted_double_pendulum": InvertedDoublePendulum,
    "reacher": Reacher,
    "swimmer": Swimmer,
    "halfcheetah": HalfCheetah,
    "hopper": Hopper,
    "walker2d": Walker2d,
    "humanoid": Humanoid,
    "ant": Ant,
}

GYMNASIUM_IDS: dict[str, str] = {
    "inverted_pendulum": "InvertedPendulum-v5",
    "inverted_double_pendulum": "InvertedDoublePendulum-v5",
    "reacher": "Reacher-v5",
    "swimmer": "Swimmer-v5",
    "halfcheetah": "HalfCheetah-v5",
    "hopper": "Hopper-v5",
    "walker2d": "Walker2d-v5",
    "humanoid": "Humanoid-v5",
    "ant": "Ant-v5",
}
"""Registry name -> the Gymnasium id each port reproduces (parity tests, Gymnasium evaluation)."""


def make(name: str, physics: str = "v5", **overrides: Any) -> MujocoEnv:
    """Builds a registered task. `overrides` change v5's default arguments (e.g. reset_noise_scale)."""
    if name not in REGISTRY:
        raise ValueError(f"unknown env {name!r}; valid names: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name](physics=physics, **overrides)


__all__ = ["GYMNASIUM_IDS", "PHYSICS", "REGISTRY", "MujocoEnv", "State", "VecEnv", "VecState", "make"]
