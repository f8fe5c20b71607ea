"""A trained run's deterministic policy in Gymnasium's own v5 environment (MuJoCo C).

    python -m savgo_mjx.evaluate RUN_DIR                      # member 0, 10 episodes
    python -m savgo_mjx.evaluate RUN_DIR --all-members --episodes 20 --seed 3
    python -m savgo_mjx.evaluate RUN_DIR --member 2 --json    # one JSON object per member
    python -m savgo_mjx.evaluate RUN_DIR --all-members --episodes 20 --save  # + RUN_DIR/gym_eval.jsonl

Loads RUN_DIR/policies/member-<i>.npz (written next to every checkpoint; see savgo_mjx.policy),
runs `gymnasium.make(<task>-v5)` unmodified (its XML physics, Humanoid with its PGS solver, its own
1000-step time limit) with the deterministic action tanh(mu), and prints the mean +- std episode
return beside the MJX evaluation return that training logged in metrics.jsonl at the policy's env
step (or the last one before it), and their ratio (Gymnasium / MJX; transfer is good at >= 95%).
A policy trained with --physics fast is still evaluated in the v5 simulator: that is the point.

Episodes: the first reset is seeded with --seed, later ones continue the env's random stream, so
the same command gives the same returns. Needs numpy and gymnasium only (no JAX).
--save appends each member's JSON object to RUN_DIR/gym_eval.jsonl, where `savgo_mjx.report`
reads the final policies' returns (a column beside the training-time evaluations, which use
fewer episodes and, for a policy that is still unstable, swing from one evaluation to the next).
Bad input (no run dir, no exported policies, unknown member) exits with code 2 and a one-line
message.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Optional

import numpy as np

from savgo_mjx.policy import Policy, load_policy, policy_files

GOAL = 0.95
"""Gymnasium return / MJX eval return that counts as a good transfer."""
GYM_EVAL_FILE = "gym_eval.jsonl"
"""In a run dir: one `evaluate_run` result per line, appended by `--save`."""


class EvaluateError(ValueError):
    """Bad input: the CLI prints it on one line and exits with code 2."""


def run_policy_files(run_dir: str) -> dict[int, str]:
    """policy_files(run_dir), or EvaluateError when the run or its exported policies are missing."""
    if not os.path.isdir(run_dir):
        raise EvaluateError(f"no run directory {run_dir}")
    files = policy_files(run_dir)
    if not files:
        raise EvaluateError(f"no exported policies in {os.path.join(run_dir, 'policies')} (they are "
                            f"written with each checkpoint; for an older run: python -m "
                            f"savgo_mjx.policy {run_dir})")
    return files


def make_gym_env(policy: Policy, **kwargs):
    """gymnasium.make of the policy's v5 task, checked against the policy's sizes."""
    import gymnasium

    if not policy.gym_id:
        raise EvaluateError(f"the policy's env {policy.env!r} has no Gymnasium id")
    env = gymnasium.make(policy.gym_id, **kwargs)
    obs_shape, act_shape = env.observation_space.shape, env.action_space.shape
    if obs_shape != (policy.observation_size,) or act_shape != (policy.action_size,):
        env.close()
        raise EvaluateError(f"{policy.gym_id} has observations {obs_shape} and actions {act_shape}; "
                            f"the policy was trained on ({policy.observation_size},) and "
                            f"({policy.action_size},)")
    return env


def _episode(env, policy: Policy, seed: Optional[int]) -> tuple[float, int]:
    """One deterministic episode in a Gymnasium env: (return, length). seed None continues the
    env's random stream."""
    obs, _ = env.reset(seed=seed)
    total, steps, done = 0.0, 0, False
    while not done:
        obs, reward, terminated, truncated, _ = env.step(policy(obs))
        total += float(reward)
        steps += 1
        done = terminated or truncated
    return total, steps


def run_episodes(policy: Policy, episodes: int = 10, seed: int = 0) -> dict[str, list]:
    """Deterministic episodes in the Gymnasium env: {"returns": [...], "lengths": [...]}."""
    env = make_gym_env(policy)
    returns, lengths = [], []
    try:
        for episode in range(episodes):
            total, steps = _episode(env, policy, seed if episode == 0 else None)
            returns.append(total)
            lengths.append(steps)
    finally:
        env.close()
    return {"returns": returns, "lengths": lengths}


def run_seeded_episode(policy: Policy, seed: int) -> tuple[float, int]:
    """One deterministic episode in a fresh Gymnasium env reset with `seed`: (return, length).
    Its own env, so that episodes can run on parallel threads (MuJoCo's step releases the GIL)."""
    env = make_gym_env(policy)
    try:
        return _episode(env, policy, seed)
    finally:
        env.close()


def episode_seed(member_seed: int, env_steps: int, episode: int) -> int:
    """The reset seed of one evaluation episode: it depends on the member's seed, the policy's
    env step count and the episode index only (not on thread count or timing)."""
    return int(np.random.SeedSequence([member_seed, env_steps, episode]).generate_state(1)[0])


class BackgroundEvaluator:
    """Evaluates snapshots of the members' policies in Gymnasium v5 on host threads while the
    device trains on.

        evaluator = BackgroundEvaluator(episodes=16, workers=4)
        evaluator.submit(policies, tag)          # returns at once
        for tag, returns, lengths in evaluator.finished(): ...   # [S, episodes] each
        evaluator.finished(max_pending=0)        # blocks until every submission is done

    Results come back in submission order. Each episode runs in its own env with the seed
    `episode_seed(policy seed, policy env steps, index)`, so a result does not depend on the
    number of workers."""

    def __init__(self, episodes: int, workers: int):
        if episodes <= 0 or workers <= 0:
            raise EvaluateError(f"episodes and workers must be positive, got {episodes} and {workers}")
        self.episodes = episodes
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="savgo-mjx-eval")
        self._pending: list[tuple[Any, list[list[Future]]]] = []
        self.errors: list[str] = []
        """Errors of episodes that raised, for the caller to report (and clear)."""

    def submit(self, policies: list[Policy], tag: Any) -> None:
        """Queues `episodes` episodes of every policy; `tag` comes back with the results."""
        futures = [[self._pool.submit(run_seeded_episode, p,
                                      episode_seed(int(p.metadata["seed"]), int(p.metadata["env_steps"]), e))
                    for e in range(self.episodes)] for p in policies]
        self._pending.append((tag, futures))

    @property
    def pending(self) -> int:
        """Submissions whose results have not been returned by finished() yet."""
        return len(self._pending)

    def finished(self, max_pending: Optional[int] = None) -> list[tuple[Any, np.ndarray, np.ndarray]]:
        """(tag, returns [S, episodes], lengths [S, episodes]) of the submissions done so far, in
        submission order, each returned once. With `max_pending`, first waits (oldest first)
        until at most that many are left running: 0 waits for all. An episode that raised counts
        as return NaN, length 0, and its error is appended to `errors`."""
        done = []
        while self._pending:
            tag, futures = self._pending[0]
            flat = [f for member in futures for f in member]
            must_wait = max_pending is not None and len(self._pending) > max_pending
            if not must_wait and not all(f.done() for f in flat):
                break
            results = np.asarray([[self._result(f) for f in member] for member in futures], dtype=float)
            done.append((tag, results[..., 0], results[..., 1].astype(int)))
            self._pending.pop(0)
        return done

    def _result(self, future: Future) -> tuple[float, int]:
        """An episode's (return, length); (NaN, 0) if it raised, its error kept in `errors`."""
        try:
            return future.result()
        except Exception as e:  # noqa: BLE001 - an evaluation must not end the training run
            self.errors.append(f"{type(e).__name__}: {e}")
            return float("nan"), 0

    def close(self) -> None:
        """Drops the queued episodes that have not started; running ones finish on their own."""
        self._pool.shutdown(wait=False, cancel_futures=True)


def mjx_eval_return(run_dir: str, member: int, env_steps: Optional[int] = None) -> Optional[dict]:
    """The eval_return that training logged for `member` at `env_steps` (or the last evaluation
    before it; any step if None): {"eval_return", "eval_return_std", "env_steps"}, or None."""
    path = os.path.join(run_dir, "metrics.jsonl")
    if not os.path.isfile(path):
        return None
    best = None
    with open(path) as f:
        for line in f:
            if not line.strip():
                continue
            row = json.loads(line)
            if row.get("member", 0) != member or row.get("eval_return") is None:
                continue
            if row.get("eval_backend", "mjx") != "mjx":  # already a Gymnasium return
                continue
            if env_steps is not None and row["env_steps"] > env_steps:
                continue
            if best is None or row["env_steps"] >= best["env_steps"]:  # a resumed run's later row wins
                best = row
    if best is None:
        return None
    return {"eval_return": best["eval_return"], "eval_return_std": best.get("eval_return_std"),
            "env_steps": best["env_steps"]}


def ratio(gym_return: float, mjx_return: Optional[float]) -> Optional[float]:
    """Gymnasium / MJX return; None when the MJX return is missing or not positive (then a ratio
    says nothing: e.g. Reacher's returns are negative; compare the difference instead)."""
    if mjx_return is None or not mjx_return > 0:
        return None
    return gym_return / mjx_return


def evaluate_run(run_dir: str, members: Optional[list[int]] = None, episodes: int = 10,
                 seed: int = 0) -> list[dict[str, Any]]:
    """Evaluates the exported policies of `members` (default: all) in Gymnasium; one dict per
    member with the Gymnasium returns, the logged MJX eval return and their ratio.
    EvaluateError for a run dir without policies or an unknown member."""
    files = run_policy_files(run_dir)
    members = list(files) if members is None else members
    for m in members:
        if m not in files:
            raise EvaluateError(f"{run_dir} has no policy of member {m}; exported members: "
                                f"{', '.join(map(str, files))}")
    if episodes <= 0:
        raise EvaluateError(f"--episodes must be positive, got {episodes}")
    results = []
    for m in members:
        try:
            policy = load_policy(files[m])
        except ValueError as e:
            raise EvaluateError(str(e)) from None
        meta = policy.metadata
        gym = run_episodes(policy, episodes, seed)
        mean = float(np.mean(gym["returns"]))
        mjx = mjx_eval_return(run_dir, m, meta.get("env_steps"))
        mjx_mean = None if mjx is None else mjx["eval_return"]
        results.append({
            "run_dir": run_dir, "member": m, "seed": meta.get("seed"), "env": policy.env,
            "gym_id": policy.gym_id, "physics": meta.get("physics"), "algo": meta.get("algo"),
            "ablation": meta.get("ablation"), "swept": meta.get("swept", {}),
            "env_steps": meta.get("env_steps"), "episodes": episodes, "eval_seed": seed,
            "gym_return": mean, "gym_return_std": float(np.std(gym["returns"])),
            "gym_returns": gym["returns"], "gym_lengths": gym["lengths"],
            "mjx_eval_return": mjx_mean,
            "mjx_eval_return_std": None if mjx is None else mjx["eval_return_std"],
            "mjx_eval_steps": None if mjx is None else mjx["env_steps"],
            "ratio": ratio(mean, mjx_mean),
        })
    return results


def save_results(run_dir: str, results: list[dict[str, Any]]) -> str:
    """Appends `results` (evaluate_run's dicts) to RUN_DIR/gym_eval.jsonl; returns its path."""
    path = os.path.join(run_dir, GYM_EVAL_FILE)
    with open(path, "a") as f:
        for r in results:
            f.write(json.dumps(r) + "\n")
    return path


def read_saved_results(run_dir: str) -> dict[int, dict[str, Any]]:
    """member -> its saved result with the most env steps (of equals, the one saved last);
    empty without gym_eval.jsonl. ValueError for a line that is not such a result."""
    path = os.path.join(run_dir, GYM_EVAL_FILE)
    latest: dict[int, dict[str, Any]] = {}
    if not os.path.isfile(path):
        return latest
    with open(path) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            r = json.loads(line)
            missing = [k for k in ("member", "env_steps", "episodes", "gym_return") if k not in r]
            if missing:
                raise ValueError(f"line {number} lacks {', '.join(missing)}")
            m = int(r["member"])
            if m not in latest or int(r["env_steps"]) >= int(latest[m]["env_steps"]):
                latest[m] = r
    return latest


def format_result(r: dict[str, Any]) -> str:
    """One line: member, Gymnasium return, MJX eval return, ratio."""
    swept = "".join(f", {k}={v:g}" for k, v in r["swept"].items())
    head = (f"member {r['member']} (seed {r['seed']}{swept}, {r['env_steps']:,} env steps, "
            f"trained on MJX physics {r['physics']})")
    gym = (f"Gymnasium {r['gym_id']} {r['gym_return']:.1f} +- {r['gym_return_std']:.1f} "
           f"({r['episodes']} episodes, mean length {np.mean(r['gym_lengths']):.0f})")
    if r["mjx_eval_return"] is None:
        mjx = "MJX eval n/a (metrics.jsonl has no MJX evaluation: training evaluated in Gymnasium, or not yet)"
    else:
        std = r["mjx_eval_return_std"]
        mjx = (f"MJX eval {r['mjx_eval_return']:.1f}" + ("" if std is None else f" +- {std:.1f}")
               + f" (at {r['mjx_eval_steps']:,} steps)")
    if r["ratio"] is not None:
        verdict = "ok" if r["ratio"] >= GOAL else f"below the {GOAL:.0%} goal"
        tail = f"ratio {r['ratio']:.1%} ({verdict})"
    elif r["mjx_eval_return"] is not None:
        tail = f"difference {r['gym_return'] - r['mjx_eval_return']:+.1f} (no ratio: MJX return <= 0)"
    else:
        tail = "ratio n/a"
    return f"{head}: {gym} | {mjx} | {tail}"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit code 2
        raise EvaluateError(message)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m savgo_mjx.evaluate", description=__doc__,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", help="a training run directory (holding policies/)")
    parser.add_argument("--episodes", type=int, default=10, help="Gymnasium episodes per member")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--member", type=int, default=None, help="member index (default 0)")
    which.add_argument("--all-members", action="store_true", help="every exported member")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first Gymnasium reset")
    parser.add_argument("--json", action="store_true", help="print one JSON object per member")
    parser.add_argument("--save", action="store_true",
                        help=f"also append the results to RUN_DIR/{GYM_EVAL_FILE} (read by savgo_mjx.report)")
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    try:
        args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
        members = None if args.all_members else [0 if args.member is None else args.member]
        results = evaluate_run(args.run_dir, members, args.episodes, args.seed)
    except EvaluateError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for r in results:
        print(json.dumps(r) if args.json else format_result(r), flush=True)
    if args.save:
        print(f"appended to {save_results(args.run_dir, results)}", file=sys.stderr if args.json else sys.stdout)
    if len(results) > 1 and not args.json:
        ratios = [r["ratio"] for r in results if r["ratio"] is not None]
        if ratios:
            print(f"{len(results)} members: mean ratio {np.mean(ratios):.1%}, lowest "
                  f"{min(ratios):.1%}; {sum(x >= GOAL for x in ratios)}/{len(ratios)} at >= {GOAL:.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
