"""Figures and results tables from run directories.

    python -m savgo_mjx.report RUN_DIR [RUN_DIR ...] [--out DIR]

A RUN_DIR is what training writes (config.json, metrics.jsonl); a directory without metrics.jsonl
whose subdirectories are run dirs (e.g. the output of `python -m savgo_mjx.ablate`) stands for
those. The pipeline is load -> group -> summarise -> plot/write:

- load: every (run dir, member) with evaluation rows becomes one `Curve` (one seed). A run may
  train several members side by side (seeds and swept settings); rows without `member` are
  member 0, rows without `seed` take config.json's seed.
- group: curves with the same setting (env, algo, ablation or "SAVGO"/"SAC", swept values, and
  any other config field that differs between the given runs) form that setting's sample of seeds,
  whether they come from one run dir or several.
- summarise, per (env, setting): number of seeds; final eval return (each seed's last
  evaluation), mean +- std over seeds (sample std, ddof=1); best eval return (each seed's best
  evaluation: the paper's metric), mean +- std; where every seed's final policy was evaluated
  with `python -m savgo_mjx.evaluate RUN_DIR --all-members --episodes 20 --save`
  (RUN_DIR/gym_eval.jsonl), that return (each seed's mean over its episodes), mean +- std over
  seeds: more episodes than the training-time evaluations, so it tells a policy that holds from
  one that peaked once; the interquartile mean (IQM) of the final returns
  with a 95% percentile-bootstrap confidence interval over seeds (see `iqm`, `bootstrap_ci`); the
  paper's number beside it (docs/SAVGO.md section 6, `PAPER_RESULTS`), and for ablations the
  section-5 layout (`PAPER_ABLATIONS`).
- plot: one PNG per env, eval return against env steps (left) and wall-clock seconds (right),
  one line per setting: the mean over seeds with a band of mean +- 1.96 standard errors
  (a normal-approximation 95% confidence interval of the mean; no band with one seed).
- write: OUT/results.md, OUT/results.csv, OUT/<env>.png.

A RUN_DIR without metrics.jsonl or without evaluation rows is a one-line error with exit code 2.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import itertools
import json
import os
import sys
import textwrap
from typing import Any, Optional, Sequence

import numpy as np

from savgo_mjx.config import ABLATIONS, Config, ConfigError, parse_sweep
from savgo_mjx.evaluate import GYM_EVAL_FILE, read_saved_results
from savgo_mjx.metrics import read_metrics


class ReportError(ValueError):
    """Unusable input (no metrics, no evaluation rows): printed on one line, exit code 2."""


# --- the paper's numbers (docs/SAVGO.md) ------------------------------------------------------

PAPER_RESULTS: dict[str, dict[str, tuple[float, Optional[float]]]] = {
    "humanoid": {"PPO": (540, 122), "TD3": (799, 1519), "SAC": (5351, 75), "TQC": (6330, 227),
                 "SAVGO": (7687, 319)},
    "walker2d": {"PPO": (4321, 635), "TD3": (4503, 752), "SAC": (4693, 572), "TQC": (4952, 374),
                 "SAVGO": (5626, 747)},
    "ant": {"PPO": (12, 47), "TD3": (4366, 1296), "SAC": (4086, 789), "TQC": (3041, 668),
            "SAVGO": (4653, 235)},
    "halfcheetah": {"PPO": (1369, 997), "TD3": (10259, 838), "SAC": (10388, 1069),
                    "TQC": (12114, 1006), "SAVGO": (10545, 616)},
    "hopper": {"PPO": (3527, 284), "TD3": (3584, 77), "SAC": (3371, 84), "TQC": (3571, 65),
               "SAVGO": (3573, 114)},
    "swimmer": {"PPO": (114, 25), "TD3": (102, 46), "SAC": (77, 10), "TQC": (106, 25),
                "SAVGO": (88, 28)},
    "inverted_double_pendulum": {"PPO": (9350, None), "TD3": (9358, None), "SAC": (9360, None),
                                 "TQC": (9360, None), "SAVGO": (9360, None)},
    "inverted_pendulum": {"PPO": (1000, None), "TD3": (1000, None), "SAC": (1000, None),
                          "TQC": (1000, None), "SAVGO": (1000, None)},
}
"""docs/SAVGO.md section 6: Gymnasium MuJoCo v5, 1M env steps, mean +- std over seeds of each
seed's BEST evaluation return (std None where the paper gives one number). Reacher-v5 is not in
the paper's table."""


@dataclasses.dataclass(frozen=True)
class PaperAblation:
    change: str
    """What the ablation switches off (docs/SAVGO.md section 5)."""
    numbers: dict[str, tuple[float, float]]
    """env -> (ablation, SAVGO) returns the paper quotes ("about")."""
    findings: dict[str, str]
    """env (or "*" for every env) -> the paper's qualitative finding."""


PAPER_ABLATIONS: dict[str, PaperAblation] = {
    "A1": PaperAblation("random, frozen embedding trunk",
                        {"halfcheetah": (8400, 10400), "humanoid": (5400, 7200)},
                        {"*": "clearly worse than SAVGO"}),
    "A2": PaperAblation("no geometry loss, trunk trained through the actor only", {}, {}),
    "A3": PaperAblation("eta = 0 (no temporal mixing)", {}, {}),
    "A4": PaperAblation("fixed beta = 1 (no quantile scaling)", {},
                        {"halfcheetah": "collapses HalfCheetah"}),
    "A5": PaperAblation("lambda = 1", {}, {"*": "best lambda about 1.5 (0.25 worst)"}),
    "B1": PaperAblation("uniform kernel weights (no value signal)", {}, {"*": "fails to learn"}),
    "B4": PaperAblation("argmax over candidates instead of the kernel", {}, {}),
    "B9": PaperAblation("fixed tau = 1 (no annealing)", {}, {}),
}
"""docs/SAVGO.md section 5, as data."""

ALGO_LABELS = {"savgo": "SAVGO", "sac": "SAC", "brax-ppo": "brax PPO"}

# Config fields that do not change what is learned: they never split seeds into settings.
BOOKKEEPING = {"seed", "run_dir", "resume", "num_seeds", "sweep", "ablation", "env", "algo",
               "progress", "track", "wandb_project", "wandb_entity", "checkpoint_every",
               "save_buffer", "log_every", "eval_every", "distributed"}


# --- load -------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Curve:
    """One seed's evaluation curve (one member of one run)."""
    run_dir: str
    member: int
    seed: int
    env: str
    algo: str
    ablation: Optional[str]
    swept: tuple[tuple[str, float], ...]
    """The swept hyperparameters' values of this member, by name (empty without a sweep)."""
    other: tuple[tuple[str, Any], ...]
    """Every other config field that could change learning (see BOOKKEEPING), sorted by name."""
    steps: np.ndarray
    """(T,) env steps of this run at each evaluation, strictly increasing."""
    wall: np.ndarray
    """(T,) seconds since the run started (compile included), summed over resumed segments."""
    returns: np.ndarray
    """(T,) mean return of the deterministic evaluation episodes."""
    gym_return: Optional[float] = None
    """The final policy's mean return in Gymnasium, from RUN_DIR/gym_eval.jsonl (None without)."""
    gym_episodes: int = 0


def find_runs(paths: Sequence[str]) -> list[str]:
    """The run dirs named by `paths`: a path with metrics.jsonl is a run; one without it stands for
    its subdirectories that have one. ReportError for a path with neither."""
    runs = []
    for path in paths:
        if os.path.isfile(os.path.join(path, "metrics.jsonl")):
            runs.append(path)
            continue
        children = sorted(os.path.join(path, d) for d in os.listdir(path)) if os.path.isdir(path) else []
        children = [c for c in children if os.path.isfile(os.path.join(c, "metrics.jsonl"))]
        if not children:
            raise ReportError(f"{path}: no metrics.jsonl (not a run dir, and holds no run dirs)")
        runs.extend(children)
    return runs


def _member_settings(config: dict) -> list[tuple[int, dict[str, float]]]:
    """(seed, swept values) of each member index, as savgo_mjx.config.members orders them:
    sweep combinations outer, seeds inner."""
    try:
        grid = parse_sweep(tuple(config.get("sweep") or ()))
    except ConfigError as e:
        raise ReportError(f"config.json: {e}") from None
    seed, num_seeds = int(config.get("seed", 0)), int(config.get("num_seeds", 1) or 1)
    return [(seed + i, dict(zip(grid, values)))
            for values in itertools.product(*grid.values()) for i in range(num_seeds)]


def _curve_arrays(rows: list[dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(steps, wall, returns) of one member's rows in file order. A resumed run restarts wall_s
    (so the earlier segment's last wall_s is added on) and may log some env steps again (the
    later row wins). A background evaluation's row (eval_backend "gymnasium") comes after later
    training rows of its segment with an earlier wall_s: only the other rows mark where a segment
    starts."""
    by_step: dict[int, tuple[float, float]] = {}
    offset, last_wall = 0.0, 0.0
    for row in rows:
        wall = float(row.get("wall_s") or 0.0)
        if row.get("eval_backend", "mjx") == "mjx":
            if wall < last_wall:
                offset += last_wall
            last_wall = wall
        if row.get("eval_return") is not None:
            by_step[int(row["env_steps"])] = (wall + offset, float(row["eval_return"]))
    steps = np.array(sorted(by_step), dtype=np.int64)
    wall = np.array([by_step[s][0] for s in steps], dtype=float)
    returns = np.array([by_step[s][1] for s in steps], dtype=float)
    return steps, np.maximum.accumulate(wall) if len(wall) else wall, returns


def load_run(run_dir: str) -> list[Curve]:
    """Every member of the run in `run_dir` as a Curve. ReportError without metrics.jsonl, or
    without a single evaluation row."""
    if not os.path.isfile(os.path.join(run_dir, "metrics.jsonl")):
        raise ReportError(f"{run_dir}: no metrics.jsonl")
    config: dict = {}
    if os.path.isfile(os.path.join(run_dir, "config.json")):
        with open(os.path.join(run_dir, "config.json")) as f:
            config = json.load(f)
    config = {**dataclasses.asdict(Config()), **config}
    try:
        rows = read_metrics(run_dir)
    except json.JSONDecodeError as e:
        raise ReportError(f"{run_dir}/metrics.jsonl: unreadable line ({e})") from None
    settings = _member_settings(config)
    try:
        gym = read_saved_results(run_dir)
    except (TypeError, ValueError) as e:  # json.JSONDecodeError is a ValueError
        raise ReportError(f"{run_dir}/{GYM_EVAL_FILE}: unreadable ({e})") from None
    members = sorted({int(row.get("member", 0)) for row in rows})
    curves = []
    for m in members:
        mine = [row for row in rows if int(row.get("member", 0)) == m]
        steps, wall, returns = _curve_arrays(mine)
        if not len(steps):
            continue
        seed, swept = settings[m] if m < len(settings) else (int(config["seed"]) + m, {})
        seed = int(mine[-1].get("seed", seed))
        swept = {k: float(mine[-1].get(k, v)) for k, v in swept.items()}
        other = tuple(sorted((k, v) for k, v in config.items()
                             if k not in BOOKKEEPING and k not in swept and not isinstance(v, (list, dict))))
        curves.append(Curve(run_dir=run_dir, member=m, seed=seed, env=str(config["env"]),
                            algo=str(config["algo"]), ablation=config.get("ablation"),
                            swept=tuple(sorted(swept.items())), other=other,
                            steps=steps, wall=wall, returns=returns,
                            gym_return=gym[m]["gym_return"] if m in gym else None,
                            gym_episodes=int(gym[m]["episodes"]) if m in gym else 0))
    if not curves:
        raise ReportError(f"{run_dir}: no evaluation rows (eval_return) in metrics.jsonl")
    return curves


# --- group ------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Setting:
    env: str
    algo: str
    ablation: Optional[str]
    swept: tuple[tuple[str, float], ...]
    other: tuple[tuple[str, Any], ...]
    label: str = dataclasses.field(default="", compare=False)
    """Readable name: SAVGO, SAC or the ablation, then swept values, then the other fields in
    which it differs from another setting of the same env, algo and ablation."""


def _fmt(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _base_label(s: Setting) -> str:
    label = ALGO_LABELS.get(s.algo, s.algo.upper())
    if s.ablation:
        label = s.ablation if s.algo == "savgo" else f"{label} {s.ablation}"
    return " ".join([label] + [f"{k}={_fmt(v)}" for k, v in s.swept])


def _order(s: Setting) -> tuple:
    """Sort key: env, then SAVGO, SAC, the ablations in ABLATIONS order, anything else; label."""
    names = list(ABLATIONS)
    if not s.ablation:
        rank = 0 if s.algo == "savgo" else 1
    else:
        rank = 2 + (names.index(s.ablation) if s.ablation in names else len(names))
    return (s.env, rank, s.label)


def group(curves: Sequence[Curve]) -> dict[Setting, list[Curve]]:
    """Curves -> {setting: its seeds' curves}, settings ordered by env, then SAVGO, SAC, the
    ablations in the paper's order, then anything else; seeds ordered by seed."""
    # A setting is what the member trained with, whether a value came from a sweep or a plain
    # flag: `--lam 0.5` and the lam=0.5 member of `--sweep lam=1.5,0.5` are seeds of one setting.
    groups: dict[Setting, list[Curve]] = {}
    by_values: dict[tuple, Setting] = {}
    for c in curves:
        values = tuple(sorted((k, _fmt(v)) for k, v in {**dict(c.other), **dict(c.swept)}.items()))
        setting = by_values.setdefault((c.env, c.algo, c.ablation, values),
                                       Setting(c.env, c.algo, c.ablation, c.swept, c.other))
        groups.setdefault(setting, []).append(c)
    # A label names every field in which a setting differs from another of its env, algo and
    # ablation, swept or not: a sweep member's swept values alone would hide that another run
    # in the same report differs from it in fields that were fixed in the sweep.
    families: dict[tuple, list[Setting]] = {}
    for s in groups:
        families.setdefault((s.env, s.algo, s.ablation), []).append(s)
    labelled = {}
    for same in families.values():
        fields = [{**dict(s.other), **dict(s.swept)} for s in same]
        keys = {k for f in fields for k in f}
        differing = sorted(k for k in keys if len({_fmt(f.get(k)) for f in fields}) > 1)
        for s, f in zip(same, fields):
            extra = [f"{k}={_fmt(f.get(k))}" for k in differing if k not in dict(s.swept)]
            labelled[s] = dataclasses.replace(s, label=" ".join([_base_label(s)] + extra))
    ordered = sorted(labelled.values(), key=_order)
    return {s: sorted(groups[s], key=lambda c: (c.seed, c.run_dir, c.member)) for s in ordered}


# --- summarise --------------------------------------------------------------------------------

def iqm(x: np.ndarray) -> np.ndarray:
    """Interquartile mean over the last axis: sort, drop floor(n/4) values at each end, average the
    rest (= scipy.stats.trim_mean(x, 0.25, axis=-1), the IQM of rliable). With n < 4 nothing is
    dropped. x: (..., n) -> (...)."""
    x = np.sort(np.asarray(x, dtype=float), axis=-1)
    cut = x.shape[-1] // 4
    return x[..., cut: x.shape[-1] - cut].mean(axis=-1)


def bootstrap_ci(x: np.ndarray, statistic=iqm, n_boot: int = 2000, level: float = 0.95,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap over seeds: resample the n values with replacement n_boot times
    (numpy default_rng(seed), indices of shape (n_boot, n)), apply `statistic` to each resample,
    return the (1-level)/2 and (1+level)/2 quantiles. With one task per table row this is what
    rliable's stratified bootstrap does (it resamples runs within each task). x: (n,)."""
    x = np.asarray(x, dtype=float)
    idx = np.random.default_rng(seed).integers(0, len(x), size=(n_boot, len(x)))
    stats = statistic(x[idx])
    lo, hi = np.quantile(stats, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def _std(x: np.ndarray) -> Optional[float]:
    """Sample std (ddof=1); None for one seed, where it is undefined (a printed 0.0 would read as
    "no spread")."""
    return float(np.std(x, ddof=1)) if len(x) > 1 else None


@dataclasses.dataclass(frozen=True)
class Summary:
    """One results-table row: a setting on one env, over its seeds."""
    env: str
    setting: str
    algo: str
    ablation: Optional[str]
    swept: str
    seeds: int
    steps: float
    """Mean over seeds of the env steps at the last evaluation."""
    wall_s: float
    """Mean over seeds of the wall-clock seconds at the last evaluation."""
    final_mean: float
    final_std: Optional[float]  # None with one seed
    best_mean: float
    best_std: Optional[float]
    gym_mean: Optional[float]
    """Mean over seeds of the final policies' Gymnasium returns; None unless every seed has one."""
    gym_std: Optional[float]
    gym_episodes: Optional[int]
    """The fewest Gymnasium episodes behind one seed's return."""
    iqm: float
    iqm_ci_low: float
    iqm_ci_high: float
    paper_mean: Optional[float]
    paper_std: Optional[float]
    run_dirs: str


def summarise(setting: Setting, curves: Sequence[Curve], n_boot: int = 2000) -> Summary:
    """The table row of one setting: see the module docstring for each statistic."""
    final = np.array([c.returns[-1] for c in curves])
    best = np.array([c.returns.max() for c in curves])
    lo, hi = bootstrap_ci(final, iqm, n_boot=n_boot)
    gym = np.array([c.gym_return for c in curves]) if all(c.gym_return is not None for c in curves) else None
    paper = None
    if not setting.ablation and not setting.swept and setting.algo in ALGO_LABELS:
        paper = PAPER_RESULTS.get(setting.env, {}).get(ALGO_LABELS[setting.algo])
    return Summary(
        env=setting.env, setting=setting.label, algo=setting.algo, ablation=setting.ablation,
        swept=" ".join(f"{k}={_fmt(v)}" for k, v in setting.swept), seeds=len(curves),
        steps=float(np.mean([c.steps[-1] for c in curves])),
        wall_s=float(np.mean([c.wall[-1] for c in curves])),
        final_mean=float(final.mean()), final_std=_std(final),
        best_mean=float(best.mean()), best_std=_std(best),
        gym_mean=None if gym is None else float(gym.mean()), gym_std=None if gym is None else _std(gym),
        gym_episodes=None if gym is None else min(c.gym_episodes for c in curves),
        iqm=float(iqm(final)), iqm_ci_low=lo, iqm_ci_high=hi,
        paper_mean=None if paper is None else float(paper[0]),
        paper_std=None if paper is None or paper[1] is None else float(paper[1]),
        run_dirs=";".join(sorted({c.run_dir for c in curves})),
    )


def mean_curve(xs: Sequence[np.ndarray], ys: Sequence[np.ndarray]
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Seeds' curves (x_i, y_i) -> (grid, mean, half_width, n) on a common grid.

    The grid is the union of the seeds' x values inside the range all seeds cover (the union of
    all x values when they share no range); each seed is linearly interpolated onto it, and is
    missing (NaN) outside its own range. half_width = 1.96 * std(ddof=1) / sqrt(n), the
    normal-approximation 95% CI of the mean over the n seeds present (0 where n < 2).
    """
    lo, hi = max(x[0] for x in xs), min(x[-1] for x in xs)
    grid = np.unique(np.concatenate([np.asarray(x, dtype=float) for x in xs]))
    if lo <= hi:
        grid = grid[(grid >= lo) & (grid <= hi)]
    values = np.full((len(xs), len(grid)), np.nan)
    for i, (x, y) in enumerate(zip(xs, ys)):
        inside = (grid >= x[0]) & (grid <= x[-1])
        values[i, inside] = np.interp(grid[inside], x, y)
    n = np.isfinite(values).sum(axis=0)
    mean = np.nanmean(values, axis=0)
    sd = np.zeros_like(mean)
    several = n > 1
    sd[several] = np.nanstd(values[:, several], axis=0, ddof=1)
    return grid, mean, np.where(several, 1.96 * sd / np.sqrt(np.maximum(n, 1)), 0.0), n


# --- plot and write ---------------------------------------------------------------------------

MARKERS = ("o", "s", "^", "D", "v", "P")


def plot_env(env: str, groups: dict[Setting, list[Curve]], path: str) -> str:
    """One figure for one env: eval return vs env steps (left) and vs wall-clock seconds (right);
    per setting the mean over seeds and a band of mean +- 1.96 SEM. Writes the PNG at `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # Settings that differ in many fields have long labels: they go, wrapped, in one legend
    # under both panels (inside a panel they squeezed the axes to nothing).
    labels = {s: textwrap.fill(f"{s.label} (n={len(c)})", 150) for s, c in groups.items()}
    legend_lines = sum(label.count("\n") + 1 for label in labels.values()) + 1
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5 + 0.17 * legend_lines), layout="constrained")
    paper = PAPER_RESULTS.get(env, {}).get("SAVGO")
    for i, (setting, curves) in enumerate(groups.items()):
        # Ten colours; past ten settings the marker tells lines of one colour apart.
        colour, marker = f"C{i % 10}", MARKERS[(i // 10) % len(MARKERS)]
        style = "-" if not setting.ablation else "--"
        for ax, attr in zip(axes, ("steps", "wall")):
            grid, mean, half, _ = mean_curve([getattr(c, attr) for c in curves], [c.returns for c in curves])
            ax.plot(grid, mean, style, color=colour, marker=marker, markevery=max(1, len(grid) // 20),
                    label=labels[setting])
            if (half > 0).any():
                ax.fill_between(grid, mean - half, mean + half, color=colour, alpha=0.2, linewidth=0)
    for ax, xlabel in zip(axes, ("env steps", "wall-clock seconds (compile included)")):
        if paper is not None:
            ax.axhline(paper[0], color="grey", linestyle=":", label="paper SAVGO (best eval, 1M steps)")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("eval return")
        ax.grid(alpha=0.3)
    axes[0].set_title(f"{env}: mean over seeds, band = mean ± 1.96 SEM (95% CI)", fontsize=10)
    handles, names = axes[1].get_legend_handles_labels()
    fig.legend(handles, names, fontsize=8, loc="outside lower center")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _pm(mean: Optional[float], std: Optional[float]) -> str:
    if mean is None:
        return "—"
    return f"{mean:.1f}" if std is None else f"{mean:.1f} ± {std:.1f}"


def _gym(s: Summary) -> str:
    return "—" if s.gym_mean is None else f"{_pm(s.gym_mean, s.gym_std)} (N={s.gym_episodes})"


def _paper_ablation(env: str, name: str) -> str:
    """The paper's number (and delta) for this ablation on this env, or its finding, or a dash."""
    info = PAPER_ABLATIONS.get(name)
    if info is None:
        return "—"
    if env in info.numbers:
        ablated, savgo = info.numbers[env]
        return f"about {ablated:.0f} vs SAVGO {savgo:.0f} (Δ {ablated - savgo:+.0f})"
    return info.findings.get(env) or info.findings.get("*") or "—"


def markdown(summaries: Sequence[Summary], figures: dict[str, str]) -> str:
    """results.md: per env, the results table, then the ablation table (SAVGO.md section 5
    layout) if any ablation ran, then the figure."""
    out = io.StringIO()
    out.write("# Results\n\n"
              "final: each seed's last evaluation return, mean ± std over seeds (ddof=1). "
              "best: each seed's best evaluation return, mean ± std (the paper's metric). "
              "Gymnasium final: each seed's final policy over N Gymnasium v5 episodes "
              "(`python -m savgo_mjx.evaluate RUN_DIR --all-members --episodes 20 --save`), "
              "mean ± std over seeds; — unless every seed has one. "
              "IQM: interquartile mean of the final returns (drop floor(n/4) at each end), with a "
              "95% percentile-bootstrap CI over seeds (2000 resamples). paper: docs/SAVGO.md §6 "
              "(best evaluation, 1M env steps).\n")
    for env in dict.fromkeys(s.env for s in summaries):
        rows = [s for s in summaries if s.env == env]
        out.write(f"\n## {env}\n\n| setting | seeds | env steps | wall s | final | best | Gymnasium final "
                  "| IQM final [95% CI] | paper (best) |\n|---|---|---|---|---|---|---|---|---|\n")
        for s in rows:
            out.write(f"| {s.setting} | {s.seeds} | {s.steps:,.0f} | {s.wall_s:,.0f} | "
                      f"{_pm(s.final_mean, s.final_std)} | {_pm(s.best_mean, s.best_std)} | "
                      f"{_gym(s)} | {s.iqm:.1f} [{s.iqm_ci_low:.1f}, {s.iqm_ci_high:.1f}] | "
                      f"{_pm(s.paper_mean, s.paper_std)} |\n")
        ablated = [s for s in rows if s.ablation and s.algo == "savgo" and not s.swept]
        if ablated:
            baseline = next((s for s in rows if s.setting == "SAVGO"), None)
            out.write("\n| ablation | what changes | final (ours) | Δ vs our SAVGO | paper |\n"
                      "|---|---|---|---|---|\n")
            for s in ablated:
                change = PAPER_ABLATIONS[s.ablation].change if s.ablation in PAPER_ABLATIONS else ""
                delta = f"{s.final_mean - baseline.final_mean:+.1f}" if baseline else "—"
                out.write(f"| {s.setting} | {change} | {_pm(s.final_mean, s.final_std)} | {delta} | "
                          f"{_paper_ablation(env, s.ablation)} |\n")
        if env in figures:
            out.write(f"\n![{env}]({os.path.basename(figures[env])})\n")
    return out.getvalue()


def write_csv(summaries: Sequence[Summary], path: str) -> str:
    """results.csv: one row per (env, setting), the Summary fields at full precision."""
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[field.name for field in dataclasses.fields(Summary)])
        writer.writeheader()
        for s in summaries:
            writer.writerow({k: "" if v is None else v for k, v in dataclasses.asdict(s).items()})
    return path


@dataclasses.dataclass
class Report:
    summaries: list[Summary]
    markdown: str
    paths: list[str]
    """results.md, results.csv, then one PNG per env."""


def report(paths: Sequence[str], out: str, n_boot: int = 2000) -> Report:
    """The whole pipeline: run dirs (or folders of run dirs) -> OUT/results.md, results.csv and
    <env>.png. Raises ReportError for unusable input, before writing anything."""
    curves = [c for run in find_runs(paths) for c in load_run(run)]
    groups = group(curves)
    summaries = [summarise(s, cs, n_boot=n_boot) for s, cs in groups.items()]
    os.makedirs(out, exist_ok=True)
    figures = {}
    for env in dict.fromkeys(s.env for s in groups):
        mine = {s: cs for s, cs in groups.items() if s.env == env}
        figures[env] = plot_env(env, mine, os.path.join(out, f"{env}.png"))
    text = markdown(summaries, figures)
    md_path = os.path.join(out, "results.md")
    with open(md_path, "w") as f:
        f.write(text)
    csv_path = write_csv(summaries, os.path.join(out, "results.csv"))
    return Report(summaries, text, [md_path, csv_path, *figures.values()])


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m savgo_mjx.report", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    parser.add_argument("--out", default="report",
                        help="where results.md, results.csv and the PNGs go (default: report)")
    args = parser.parse_args(argv)
    try:
        result = report(args.run_dirs, args.out)
    except ReportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(result.markdown)
    for path in result.paths:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
