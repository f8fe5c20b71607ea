"""Learning on CPU: SAVGO and SAC each solve InvertedPendulum-v5; the uniform kernel (ablation B1),
which cuts the value signal out of the actor update, does not on the same budget."""
import dataclasses

import pytest

from savgo_mjx.config import Config
from savgo_mjx.train_loop import train

# Small networks and a high replay ratio keep this to minutes on 2 cores; everything else is
# the paper's algorithm with its defaults.
LEARN = Config(
    env="inverted_pendulum", num_envs=8, total_steps=20_000, warmup_steps=1_000,
    buffer_size=50_000, batch_size=128, updates_per_iter=4, geometry_batch=64, actor_batch=32,
    num_candidates=32, hidden=64, eval_every=0, eval_envs=5, log_every=1_000,
    checkpoint_every=0, progress=False,
)


@pytest.mark.parametrize("algo, overrides, solves", [
    ("savgo", {}, True),
    ("sac", {}, True),
    ("savgo", {"kernel": "uniform"}, False),
], ids=["savgo", "sac", "B1-uniform-kernel"])
def test_inverted_pendulum(algo, overrides, solves, tmp_path):
    cfg = dataclasses.replace(LEARN, algo=algo, run_dir=str(tmp_path), **overrides)
    eval_return = train(cfg)["eval_return"]
    if solves:
        assert eval_return >= 950, eval_return
    else:
        assert eval_return < 200, eval_return  # a random policy scores about 5-10
