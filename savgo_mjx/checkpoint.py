"""Checkpoints of the full training state with orbax: resume continues exactly where a run stopped.

Saved: everything in TrainState (agent params, targets, optimiser states, temperature and beta,
normaliser, env states, RNG, counters) and, unless `save_buffer` is off, the replay buffer.
orbax writes into a temporary folder and renames it when complete, so an interrupted write never
replaces the last good checkpoint.
"""
from __future__ import annotations

import os
import re

import jax
import orbax.checkpoint as ocp

from savgo_mjx.replay import ReplayBuffer
from savgo_mjx.trainer import TrainState


def _flat(tree) -> dict[str, jax.Array]:
    """The tree as {path name: leaf}, without the zero-size leaves that orbax refuses (MJX data
    has some, e.g. `act` for models without actuator state)."""
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {
        f"{i:04d}{re.sub(r'[^A-Za-z0-9]+', '_', jax.tree_util.keystr(path))}": leaf
        for i, (path, leaf) in enumerate(leaves)
        if leaf.size > 0
    }


def _unflat(like, saved: dict[str, jax.Array]):
    """Inverse of _flat: `like`'s structure with the saved leaves put back."""
    names = iter(_flat(like))
    leaves, treedef = jax.tree.flatten(like)
    return treedef.unflatten([saved[next(names)] if leaf.size > 0 else leaf for leaf in leaves])


class Checkpointer:
    def __init__(self, run_dir: str, save_buffer: bool = True, keep: int = 2):
        self.save_buffer = save_buffer
        self.manager = ocp.CheckpointManager(
            os.path.abspath(os.path.join(run_dir, "checkpoints")),
            options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True),
        )

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, ts: TrainState) -> int:
        """Saves under the env-step count; blocks until the write is complete."""
        step = int(ts.env_steps[0])  # members share the count
        items = {"state": ocp.args.StandardSave(_flat(ts.replace(buffer=None)))}
        if self.save_buffer:
            items["buffer"] = ocp.args.StandardSave(_flat(ts.buffer))
        self.manager.save(step, args=ocp.args.Composite(**items), force=True)
        self.manager.wait_until_finished()
        return step

    def restore(self, like: TrainState, step: int | None = None) -> TrainState:
        """Restores into the structure of `like` (a fresh init of the same config). Without a
        saved buffer, `like`'s empty buffer is kept and learning waits until it refills."""
        step = self.manager.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.manager.directory}")
        abstract = lambda tree: jax.tree.map(ocp.utils.to_shape_dtype_struct, _flat(tree))  # noqa: E731
        state_like = like.replace(buffer=None)
        items = {"state": ocp.args.StandardRestore(abstract(state_like))}
        has_buffer = os.path.isdir(os.path.join(self.manager.directory, str(step), "buffer"))
        if has_buffer:
            items["buffer"] = ocp.args.StandardRestore(abstract(like.buffer))
        restored = self.manager.restore(step, args=ocp.args.Composite(**items))
        buffer: ReplayBuffer = _unflat(like.buffer, restored["buffer"]) if has_buffer else like.buffer
        return _unflat(state_like, restored["state"]).replace(buffer=buffer)

    def close(self) -> None:
        self.manager.close()
