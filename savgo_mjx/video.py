"""An MP4 of one deterministic episode of a trained policy, rendered by Gymnasium's own v5 env.

    python -m savgo_mjx.video RUN_DIR                           # member 0 -> RUN_DIR/videos/member-0.mp4
    python -m savgo_mjx.video RUN_DIR --member 2 --out walk.mp4 --steps 300 --seed 1

Runs `gymnasium.make(<task>-v5, render_mode="rgb_array")` (MuJoCo C, unmodified physics) from a
reset seeded with --seed and records the reset frame and one frame per step until the episode
ends or --steps steps have passed (so at most steps + 1 frames), at the env's render_fps
(real time). Rendering is off-screen: MUJOCO_GL defaults to "egl" (works headless on CPU and GPU
machines; set MUJOCO_GL=osmesa where EGL is missing). MP4 writing uses imageio-ffmpeg.
With --track, training logs this video of its best member to Weights & Biases at the end.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Optional

import numpy as np

from savgo_mjx.evaluate import EvaluateError, make_gym_env, run_policy_files
from savgo_mjx.policy import Policy, load_policy


def default_video_path(run_dir: str, member: int) -> str:
    return os.path.join(run_dir, "videos", f"member-{member}.mp4")


def render_episode(policy: Policy, out: str, steps: int = 1000, seed: int = 0,
                   width: int = 480, height: int = 480) -> dict[str, Any]:
    """Renders one deterministic episode into `out` (MP4). Returns {"path", "frames", "steps",
    "return", "terminated", "fps"}; frames = steps + 1 (the reset frame)."""
    os.environ.setdefault("MUJOCO_GL", "egl")  # read by gymnasium when its renderer starts
    import imageio_ffmpeg

    env = make_gym_env(policy, render_mode="rgb_array", width=width, height=height)
    fps = float(env.metadata.get("render_fps") or round(1.0 / env.unwrapped.dt))
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    writer = None
    frames, total, taken, terminated = 0, 0.0, 0, False
    try:
        obs, _ = env.reset(seed=seed)
        frame = env.render()
        writer = imageio_ffmpeg.write_frames(out, (frame.shape[1], frame.shape[0]), fps=fps,
                                             quality=7, macro_block_size=1,
                                             output_params=["-loglevel", "error"])
        writer.send(None)  # start the encoder
        writer.send(np.ascontiguousarray(frame))
        frames = 1
        while taken < steps:
            obs, reward, terminated, truncated, _ = env.step(policy(obs))
            total += float(reward)
            taken += 1
            writer.send(np.ascontiguousarray(env.render()))
            frames += 1
            if terminated or truncated:
                break
    finally:
        if writer is not None:
            writer.close()
        env.close()
    return {"path": out, "frames": frames, "steps": taken, "return": total,
            "terminated": bool(terminated), "fps": fps}


def render_run(run_dir: str, member: int = 0, out: Optional[str] = None, steps: int = 1000,
               seed: int = 0) -> dict[str, Any]:
    """render_episode for one member of a run. EvaluateError if it has no such policy."""
    files = run_policy_files(run_dir)
    if member not in files:
        raise EvaluateError(f"{run_dir} has no policy of member {member}; exported members: "
                            f"{', '.join(map(str, files))}")
    if steps < 0:
        raise EvaluateError(f"--steps must be >= 0, got {steps}")
    try:
        policy = load_policy(files[member])
    except ValueError as e:
        raise EvaluateError(str(e)) from None
    return render_episode(policy, out or default_video_path(run_dir, member), steps, seed)


def log_video_to_wandb(run_dir: str, member: int = 0, step: Optional[int] = None) -> str:
    """Renders `member`'s episode and logs it to the active wandb run as "video" (at `step`).
    Raises whatever rendering raises: callers that must not fail catch it."""
    import wandb

    if wandb.run is None:
        raise RuntimeError("no active wandb run")
    result = render_run(run_dir, member)
    caption = f"member {member}: return {result['return']:.1f} in {result['steps']} steps (Gymnasium)"
    wandb.log({"video": wandb.Video(result["path"], caption=caption, format="mp4")}, step=step)
    return result["path"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit code 2
        raise EvaluateError(message)


def main(argv: Optional[list[str]] = None) -> int:
    parser = _Parser(prog="python -m savgo_mjx.video", description=__doc__,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", help="a training run directory (holding policies/)")
    parser.add_argument("--member", type=int, default=0)
    parser.add_argument("--out", help="MP4 file (default RUN_DIR/videos/member-<i>.mp4)")
    parser.add_argument("--steps", type=int, default=1000, help="at most this many env steps")
    parser.add_argument("--seed", type=int, default=0, help="seed of the Gymnasium reset")
    try:
        args = parser.parse_args(sys.argv[1:] if argv is None else argv)
        result = render_run(args.run_dir, args.member, args.out, args.steps, args.seed)
    except EvaluateError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{result['path']}: {result['frames']} frames at {result['fps']:g} fps "
          f"({result['steps']} steps, return {result['return']:.1f}"
          f"{', terminated' if result['terminated'] else ''})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
