"""Train SAVGO (or the SAC baseline) on an MJX port of a Gymnasium v5 task.

    python train.py                                   # InvertedPendulum on CPU, a few minutes
    python train.py --env humanoid --num-envs 4096    # on a GPU
    python train.py --env halfcheetah --ablation B1   # one of the paper's ablations
    python train.py --num-seeds 8 --sweep lam=1,1.5,2 # 24 runs in one compiled program
    python train.py --help                            # every knob

Defaults come from savgo_mjx.config.Config, then configs/<env>.toml, then --config FILE, then the
flags. Bad input exits with code 2 and a one-line message.
"""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import sys
import threading

import tyro

from savgo_mjx.config import ABLATIONS, Config, ConfigError, defaults_for


def _flag_value(argv: list[str], flag: str) -> str | None:
    """The value of `--flag VALUE` or `--flag=VALUE` in argv (read before tyro for layering)."""
    for i, arg in enumerate(argv):
        if arg == flag and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return None


def parse(argv: list[str]) -> Config:
    """Layers the defaults, then lets tyro parse the flags on top of them."""
    argv = list(argv)
    ablation = _flag_value(argv, "--ablation")
    config_file = _flag_value(argv, "--config")
    for flag, value in (("--ablation", ablation), ("--config", config_file)):
        if value is not None:
            i = next(i for i, a in enumerate(argv) if a == flag or a.startswith(flag + "="))
            del argv[i: i + (1 if "=" in argv[i] else 2)]
    env = _flag_value(argv, "--env") or Config.env
    run_dir = _flag_value(argv, "--run-dir")
    if "--resume" in argv and run_dir and os.path.isfile(os.path.join(run_dir, "config.json")):
        # A resumed run keeps its own settings; flags given now (e.g. --total-steps) still win.
        with open(os.path.join(run_dir, "config.json")) as f:
            base = Config(**json.load(f))
    else:
        base = defaults_for(env, config_file)
    if ablation is not None:
        if ablation not in ABLATIONS:
            raise ConfigError(f"unknown ablation {ablation!r}; valid: {', '.join(ABLATIONS)}")
        base = dataclasses.replace(base, ablation=ablation, **ABLATIONS[ablation])
    return tyro.cli(Config, default=base, args=argv, description=__doc__)


def main(argv: list[str] | None = None) -> int:
    from savgo_mjx.train_loop import TrainingDiverged, configure_jax, train

    # Ctrl-C / SIGINT during start-up stops the run (the training loop installs its own handler,
    # which saves a checkpoint). A shell starts background jobs with SIGINT ignored, and Python then
    # installs no KeyboardInterrupt handler: `kill -INT` (how scripts and benchmarks/gpu_check.py
    # stop a run at its time box) would do nothing while compiling. Install it explicitly.
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)

    try:
        cfg = parse(sys.argv[1:] if argv is None else argv)
        if cfg.distributed:
            import jax

            jax.distributed.initialize()  # coordinator, process count and id from the environment
        configure_jax()
        summary = train(cfg)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except TrainingDiverged as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    code = main()
    from savgo_mjx.train_loop import compile_in_flight

    if compile_in_flight():  # stopped before the evaluation program finished compiling
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
