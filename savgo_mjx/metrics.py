"""Where a run's numbers go: metrics.jsonl (always), a live rich display, and wandb (--track)."""
from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
from typing import Any, Optional

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from savgo_mjx.config import Config


def _clean(value: Any) -> Any:
    """Plain JSON: numpy/jax scalars become int or float, and NaN (a quantity with no data, e.g.
    no episode ended yet) becomes null."""
    if hasattr(value, "dtype") and getattr(value, "ndim", 0) == 0:
        value = value.item()
    return None if isinstance(value, float) and not math.isfinite(value) else value


class MetricsLogger:
    """One JSON object per member and log point in RUN_DIR/metrics.jsonl (appends when a run
    resumes). Every row has env_steps (per member), wall_s (since start, compile included), sps
    (env steps per second of the whole program, all members together), member, seed, the swept
    values, the chunk's mean losses and episode return, and eval_return at evaluation points.
    Evaluations that ran in the background (--eval-backend gymnasium) get rows of their own,
    written when they finish: env_steps and wall_s of the evaluated policy, eval_return,
    eval_return_std, eval_length and eval_backend, and no sps."""

    def __init__(self, cfg: Config, run_dir: str, initial_steps: int = 0):
        self.cfg = cfg
        self.path = os.path.join(run_dir, "metrics.jsonl")
        self._file = open(self.path, "a")
        self._wandb = None
        if cfg.track:
            import wandb  # imported only when tracking: it is slow to import

            self._wandb = wandb.init(
                project=cfg.wandb_project, entity=cfg.wandb_entity, config=dataclasses.asdict(cfg),
                dir=run_dir, name=os.path.basename(os.path.abspath(run_dir)), resume="allow",
            )
            # env_steps is the x axis of every curve: background evaluations arrive after later
            # training rows, and wandb's own step must only grow.
            self._wandb.define_metric("env_steps")
            self._wandb.define_metric("*", step_metric="env_steps")
        self._progress: Optional[Progress] = None
        self._shown: dict[str, str] = {}  # "return"/"eval" -> its latest text on the progress line
        if cfg.progress:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(),
                TextColumn("{task.completed:,}/{task.total:,} steps"), TextColumn("{task.fields[sps]}"),
                TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[returns]}"),
                console=Console(stderr=True),
            )
            self._task = self._progress.add_task(
                f"{cfg.algo} {cfg.env}", total=cfg.total_steps, completed=initial_steps,
                sps="", returns="",
            )
            self._progress.start()

    def log(self, rows: list[dict[str, Any]]) -> None:
        """One log point: a row per member, all at the same env_steps."""
        rows = [{k: _clean(v) for k, v in row.items()} for row in rows]
        for row in rows:
            self._file.write(json.dumps(row) + "\n")
        self._file.flush()
        if self._wandb is not None:
            flat = {}
            for row in rows:  # several members: "member/key" so that each gets its own curve
                prefix = f"{row['member']}/" if len(rows) > 1 else ""
                flat.update({prefix + k: v for k, v in row.items() if v is not None and k != "eval_backend"})
            self._wandb.log(dict(flat, env_steps=rows[0]["env_steps"]))
        if self._progress is not None:
            for key, name in (("episode_return", "return"), ("eval_return", "eval")):
                values = [row[key] for row in rows if row.get(key) is not None]
                if values:  # the mean over members; shown until the next value
                    self._shown[name] = f"{name} {sum(values) / len(values):.1f}"
            returns = "  ".join(self._shown.values())
            if rows[0].get("sps") is None:  # a background evaluation's row: the bar stays
                self._progress.update(self._task, returns=returns)
            else:
                self._progress.update(self._task, completed=min(rows[0]["env_steps"], self.cfg.total_steps),
                                      sps=f"{rows[0]['sps']:,.0f} sps", returns=returns)

    def print(self, message: str) -> None:
        if self._progress is not None:
            self._progress.console.print(message)
        else:
            print(message, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
        if self._wandb is not None:
            self._wandb.finish()
        self._file.close()


def read_metrics(run_dir: str) -> list[dict[str, Any]]:
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]
