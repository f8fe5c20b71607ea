"""The paper's ablation study (docs/SAVGO.md section 5) for one task, as one command.

    python -m savgo_mjx.ablate --env inverted_pendulum                 # the tiny CPU study
    python -m savgo_mjx.ablate --env hopper --ablations A1 B1 --num-seeds 5 --out runs/abl-hopper
    python -m savgo_mjx.ablate --env ant --algos savgo sac --total-steps 2_000_000

Trains the SAVGO baseline, each ablation (all of savgo_mjx.config.ABLATIONS, or --ablations) and
optionally the SAC baseline (--algos savgo sac), each in OUT/<setting>/ (OUT/savgo, OUT/sac,
OUT/A1, ...) with --num-seeds seeds trained side by side in one compiled program, then writes the
report (OUT/results.md, OUT/results.csv, OUT/<env>.png; see savgo_mjx.report).

Settings come from the Config defaults, then the task preset configs/<env>.toml, then the study
preset configs/ablations/<env>.toml if it exists (or --preset FILE: any Config key, plus
`ablations = [...]` and `algos = [...]`), then the flags; every other flag is a Config flag of
train.py (`python train.py --help`). Ablation overrides go on top (ABLATIONS[name]).

Run the same command again after an interruption: settings whose run dir holds a finished run
(config.json and a final metrics row at total_steps) are skipped, an unfinished one resumes from
its latest checkpoint. A run dir holding a run with different settings is an error, not
overwritten. Bad input exits with code 2 and a one-line message; a setting that diverges is
reported and the study goes on (exit code 1 at the end).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from typing import Callable, Optional, Sequence

from savgo_mjx.config import ABLATIONS, CONFIG_DIR, Config, ConfigError, defaults_for, load_toml, validate

ALGOS = ("savgo", "sac")
STUDY_KEYS = ("ablations", "algos")
"""Keys of a study preset that are not Config fields."""
PER_SETTING = ("--algo", "--ablation", "--run-dir", "--resume", "--config")
"""train.py flags that make no sense here: the study sets them per setting."""
DISPLAY_ONLY = {"run_dir", "resume", "progress", "track", "wandb_project", "wandb_entity"}
"""Config fields that may change between an interrupted study and its restart."""


@dataclasses.dataclass(frozen=True)
class Study:
    base: Config
    """The settings every run shares (before the ablation overrides)."""
    ablations: tuple[str, ...]
    algos: tuple[str, ...]
    out: str


def study_preset_path(env: str) -> str:
    return os.path.join(CONFIG_DIR, "ablations", f"{env}.toml")


def load_study_preset(path: str) -> tuple[dict, dict]:
    """A study preset -> (Config values, study values {"ablations": [...], "algos": [...]})."""
    values = load_toml(path, STUDY_KEYS, what="study preset")
    study = {k: values.pop(k) for k in STUDY_KEYS if k in values}
    return values, study


def _check_names(ablations: Sequence[str], algos: Sequence[str]) -> None:
    for name in ablations:
        if name not in ABLATIONS:
            raise ConfigError(f"unknown ablation {name!r}; valid: {', '.join(ABLATIONS)}")
    for algo in algos:
        if algo not in ALGOS:
            raise ConfigError(f"unknown algo {algo!r}; valid: {', '.join(ALGOS)}")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit code 2, like train.py
        raise ConfigError(message)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m savgo_mjx.ablate", description=__doc__, allow_abbrev=False,
                     formatter_class=argparse.RawDescriptionHelpFormatter,
                     epilog="Any other flag is a Config flag of train.py, e.g. --num-seeds 5 "
                            "--total-steps 1_000_000 --num-envs 2048 (python train.py --help).")
    parser.add_argument("--env", required=True, help="task name (python train.py --help lists them)")
    parser.add_argument("--ablations", nargs="*", metavar="NAME",
                        help=f"subset of {' '.join(ABLATIONS)} (default: the study preset's, else all; "
                             "give the flag alone for none)")
    parser.add_argument("--algos", nargs="+", metavar="ALGO",
                        help="baselines: savgo and/or sac (default: the study preset's, else savgo)")
    parser.add_argument("--out", help="study folder (default runs/ablations-<env>)")
    parser.add_argument("--preset", help="study preset (default configs/ablations/<env>.toml if present)")
    return parser


def parse(argv: Sequence[str]) -> Study:
    """Layers Config defaults, the task preset, the study preset and the flags (tyro parses the
    Config flags, as in train.py). ConfigError for bad input."""
    import tyro

    args, rest = _parser().parse_known_args(list(argv))
    for arg in rest:
        if arg in PER_SETTING or any(arg.startswith(flag + "=") for flag in PER_SETTING):
            raise ConfigError(f"{arg.split('=')[0]} is set per setting by the study; "
                              "use --algos / --ablations / --out / --preset")
    base = defaults_for(args.env)
    preset = args.preset or study_preset_path(args.env)
    study: dict = {}
    if args.preset is not None or os.path.isfile(preset):
        values, study = load_study_preset(preset)
        base = dataclasses.replace(base, **values)
    base = dataclasses.replace(base, env=args.env, algo="savgo", ablation=None, run_dir=None, resume=False)
    base = tyro.cli(Config, default=base, args=rest, prog="python -m savgo_mjx.ablate", description=__doc__)
    ablations = tuple(args.ablations if args.ablations is not None else study.get("ablations", ABLATIONS))
    algos = tuple(args.algos if args.algos is not None else study.get("algos", ["savgo"]))
    _check_names(ablations, algos)
    return Study(base=base, ablations=tuple(dict.fromkeys(ablations)), algos=tuple(dict.fromkeys(algos)),
                 out=args.out or os.path.join("runs", f"ablations-{args.env}"))


def settings(study: Study) -> list[tuple[str, Config]]:
    """(name, config) of every run of the study, in order: the baselines (savgo, sac), then the
    ablations. Each config's run_dir is OUT/<name>."""
    out = [(algo, dataclasses.replace(study.base, algo=algo)) for algo in study.algos]
    out += [(name, dataclasses.replace(study.base, algo="savgo", ablation=name, **ABLATIONS[name]))
            for name in study.ablations]
    return [(name, dataclasses.replace(cfg, run_dir=os.path.join(study.out, name))) for name, cfg in out]


def _comparable(config: dict) -> dict:
    return {k: v for k, v in json.loads(json.dumps(config)).items() if k not in DISPLAY_ONLY}


def run_state(cfg: Config) -> str:
    """What to do with cfg.run_dir: "fresh" (nothing there), "finished" (every member logged a row
    at total_steps), "resume" (unfinished, with a checkpoint), "restart" (unfinished, no
    checkpoint). ConfigError if it holds a run with other settings."""
    config_path = os.path.join(cfg.run_dir, "config.json")
    if not os.path.isfile(config_path):
        return "fresh"
    with open(config_path) as f:
        stored = _comparable(json.load(f))
    wanted = _comparable(dataclasses.asdict(cfg))
    differ = [k for k in wanted if k in stored and stored[k] != wanted[k]]
    if differ:
        k = differ[0]
        raise ConfigError(f"{cfg.run_dir} holds a run with other settings ({k} = {stored[k]!r} there, "
                          f"{wanted[k]!r} now); choose another --out or remove it")
    metrics_path = os.path.join(cfg.run_dir, "metrics.jsonl")
    if os.path.isfile(metrics_path):
        from savgo_mjx.metrics import read_metrics

        rows = [row for row in read_metrics(cfg.run_dir)]
        reached: dict[int, int] = {}
        for row in rows:
            m = int(row.get("member", 0))
            reached[m] = max(reached.get(m, 0), int(row["env_steps"]))
        if reached and min(reached.values()) >= cfg.total_steps:
            return "finished"
    if os.path.isdir(os.path.join(cfg.run_dir, "checkpoints")):
        from savgo_mjx.checkpoint import Checkpointer

        checkpointer = Checkpointer(cfg.run_dir)
        step = checkpointer.latest_step()
        checkpointer.close()
        if step is not None:
            return "resume"
    return "restart"


def run_study(study: Study, log: Callable[[str], None] = print) -> tuple[list[str], list[str]]:
    """Trains every setting not already finished. Returns (finished run dirs, failed settings
    with their reason). ConfigError for impossible settings, before anything trains;
    KeyboardInterrupt propagates (after the interrupted run saved its checkpoint)."""
    from savgo_mjx.train_loop import TrainingDiverged, configure_jax, train

    todo = settings(study)
    for _, cfg in todo:
        validate(cfg)
    states = [run_state(cfg) for _, cfg in todo]  # all checked before the first run starts
    configure_jax()
    done, failed = [], []
    for i, ((name, cfg), state) in enumerate(zip(todo, states)):
        head = f"[{i + 1}/{len(todo)}] {study.base.env} {name} -> {cfg.run_dir}"
        if state == "finished":
            log(f"{head}: finished earlier, skipped")
            done.append(cfg.run_dir)
            continue
        if state == "restart":  # an unfinished run without a checkpoint: keep its rows aside
            old = os.path.join(cfg.run_dir, "metrics.jsonl")
            if os.path.isfile(old):
                os.replace(old, old + ".incomplete")
        log(f"{head}: {'resuming' if state == 'resume' else 'training'} "
            f"({cfg.num_seeds} seed(s), {cfg.total_steps:,} env steps)")
        try:
            summary = train(dataclasses.replace(cfg, resume=state == "resume"))
        except TrainingDiverged as e:
            log(f"{head}: diverged: {e}")
            failed.append(f"{name}: {e}")
            continue
        log(f"{head}: done in {summary['wall_s']:.0f} s, final eval return {summary['eval_return']}")
        done.append(cfg.run_dir)
    return done, failed


def main(argv: Optional[Sequence[str]] = None) -> int:
    from savgo_mjx import report

    try:
        study = parse(sys.argv[1:] if argv is None else argv)
        done, failed = run_study(study)
        if not done:
            raise ConfigError("no setting finished; nothing to report")
        result = report.report(done, study.out)
    except (ConfigError, report.ReportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: run the same command again to continue (finished settings are skipped, "
              "the interrupted one resumes from its checkpoint)", file=sys.stderr)
        return 130
    print(result.markdown)
    for path in result.paths:
        print(f"wrote {path}")
    if failed:
        print("failed settings:\n" + "\n".join(f"  {line}" for line in failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
