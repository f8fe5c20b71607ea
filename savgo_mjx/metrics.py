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
    """JSON has no NaN: a quantity with no data (no episode ended yet) becomes null."""
    value = float(value) if hasattr(value, "__float__") else value
    return None if isinstance(value, float) and not math.isfinite(value) else value


class MetricsLogger:
    """One JSON object per log line in RUN_DIR/metrics.jsonl; appends when a run resumes."""

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
        self._progress: Optional[Progress] = None
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

    def log(self, row: dict[str, Any]) -> None:
        row = {k: _clean(v) for k, v in row.items()}
        self._file.write(json.dumps(row) + "\n")
        self._file.flush()
        if self._wandb is not None:
            self._wandb.log({k: v for k, v in row.items() if v is not None}, step=row["env_steps"])
        if self._progress is not None:
            returns = []
            if row.get("episode_return") is not None:
                returns.append(f"return {row['episode_return']:.1f}")
            if row.get("eval_return") is not None:
                returns.append(f"eval {row['eval_return']:.1f}")
            self._progress.update(
                self._task, completed=min(row["env_steps"], self.cfg.total_steps),
                sps=f"{row.get('sps') or 0:,.0f} sps", returns="  ".join(returns),
            )

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
