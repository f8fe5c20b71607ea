"""benchmarks/gpu_check.py, the one script a GPU session runs, checked on CPU.

- The full `--tiny` run (every phase for real: MJX compiles, train.py twice, the benchmarks, a
  SIGINT-stopped training) takes 5-10 min on the 2-core development VM, almost all of it XLA
  compiling MJX programs, so it is marked slow: `python -m pytest -m slow tests/test_gpu_check.py`.
- The default suite checks, in seconds: a phase that runs out of time is an error and the next
  phase still runs (real env and meta phases); the compile and curve orchestration (fresh cache,
  second start-up, SIGINT at the time box, exit code 130, metrics -> curve.csv/png) against a
  stand-in for train.py that behaves like it on the outside; and the PNG writer used when the GPU
  host has no matplotlib.
"""
import csv
import json
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"
PHASES = ("meta", "curve", "compile", "train", "env")


def run_check(out: Path, *args: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), "--out", str(out), *args], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT)


def phase(out: Path, name: str) -> dict:
    return json.loads((out / f"{name}.json").read_text())


def curve_rows(out: Path) -> list[dict]:
    with open(out / "curve.csv") as f:
        return list(csv.DictReader(f))


def assert_png(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert width > 100 and height > 100
    return width, height


@pytest.mark.slow
def test_tiny_run_every_phase_for_real(tmp_path):
    out = tmp_path / "out"
    result = run_check(out, "--tiny", timeout=1800)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for name in PHASES:
        rec = phase(out, name)
        assert rec["ok"] and rec["error"] is None, (name, rec)
        assert f"phase {name}: ok" in result.stdout

    env = phase(out, "env")["result"]
    assert env["rows"] and all(r["steps_per_s"] > 0 for r in env["rows"])
    train = phase(out, "train")["result"]
    rows = {r["name"]: r for r in train["rows"]}
    assert {"e2e", "raw_env", "updates", "updates_sac"} <= set(rows)
    assert all(r["steps_per_s"] > 0 for r in rows.values())
    assert train["ratios"]["train_over_raw_env_steps_per_s"] > 0
    assert train["ratios"]["savgo_over_sac_update_cost"] > 0

    comp = phase(out, "compile")["result"]
    assert len(comp["runs"]) == 2 and all(r["returncode"] == 0 for r in comp["runs"])
    assert 0 < comp["second_compile_s"] < comp["first_compile_s"]  # the persistent cache was hit
    assert "jit_run_chunk" not in comp["programs_compiled_again"]

    curve = phase(out, "curve")["result"]
    assert curve["returncode"] == 130 and curve["checkpoint_saved_on_sigint"]
    rows = curve_rows(out)
    steps = [int(r["env_steps"]) for r in rows]
    assert len(steps) >= 2 and all(b > a for a, b in zip(steps, steps[1:]))
    assert sum(r["eval_return"] != "" for r in rows) >= 2
    assert_png(out / "curve.png")

    summary = json.loads((out / "summary.json").read_text())
    assert summary["exit_code"] == 0 and summary["phases_run"] == list(PHASES)
    md = (out / "summary.md").read_text()
    for name in PHASES:
        assert f"## {name}:" in md and f"| {name} | ok |" in md


def test_a_phase_that_times_out_is_an_error_and_the_next_still_runs(tmp_path):
    out = tmp_path / "out"
    result = run_check(out, "--tiny", "--phases", "env,meta", "--budget", "env=1", timeout=300)
    assert result.returncode == 1, result.stdout + result.stderr
    env = phase(out, "env")
    assert not env["ok"] and env["timed_out"] and env["error"].startswith("timed out after 1 s")
    assert env["elapsed_s"] < 20  # killed at the budget, not left to finish
    meta = phase(out, "meta")
    assert meta["ok"] and meta["error"] is None
    assert meta["result"]["versions"]["jax"] and meta["result"]["backend"] == "cpu"
    assert meta["result"]["matmul_precision_training"] == "highest"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["phases_run"] == ["env", "meta"] and summary["exit_code"] == 1
    md = (out / "summary.md").read_text()
    assert "| env | ERROR |" in md and "| meta | ok |" in md and "## env:" in md and "## meta:" in md
    assert "phase env: ERROR" in result.stdout and "phase meta: ok" in result.stdout


# A stand-in with train.py's outside behaviour: the flags it takes, "compiled in" on stderr, one
# metrics.jsonl row per log point (every row evaluated), the summary JSON as the last stdout line,
# a compile 4x shorter when SAVGO_MJX_CACHE already holds its program, and on Ctrl-C a checkpoint
# message and exit code 130.
FAKE_TRAIN = textwrap.dedent('''
    import json, os, signal, sys, time
    signal.signal(signal.SIGINT, signal.default_int_handler)  # as train.py: even if inherited ignored
    args = sys.argv[1:]
    def flag(name, default):
        return args[args.index(name) + 1] if name in args else default
    run_dir, cache = flag("--run-dir", None), os.environ["SAVGO_MJX_CACHE"]
    total, every = int(flag("--total-steps", "1000000")), int(flag("--log-every", "8"))
    os.makedirs(run_dir, exist_ok=True)
    json.dump({"argv": args, "cache": cache}, open(os.path.join(run_dir, "argv.json"), "w"))
    program = os.path.join(cache, "jit_run_chunk-0-cache")
    compile_s = 0.1 if os.path.exists(program) else 0.4
    time.sleep(compile_s)
    open(program, "w").close()
    print(f"run dir {run_dir}; 1 member(s) x 4 envs; compiled in {compile_s:.1f} s", file=sys.stderr, flush=True)
    steps, t0 = 0, time.time()
    try:
        with open(os.path.join(run_dir, "metrics.jsonl"), "a") as f:
            while steps < total:
                time.sleep(0.05)
                steps += every
                row = {"env_steps": steps, "wall_s": compile_s + time.time() - t0, "member": 0,
                       "episode_return": steps / 10, "eval_return": steps / 5, "critic_loss": 100 / steps,
                       "entropy": 3.0 - steps / 8, "alpha": 0.5}
                f.write(json.dumps(row) + "\\n")
                f.flush()
    except KeyboardInterrupt:
        print(f"interrupted: saved a checkpoint at {steps} env steps in {run_dir}", file=sys.stderr)
        sys.exit(130)
    print(json.dumps({"run_dir": run_dir, "env_steps": steps, "compile_s": compile_s, "wall_s": 1.0}))
''')


def test_compile_and_curve_orchestration_with_a_stand_in_train_py(tmp_path):
    fake = tmp_path / "fake_train.py"
    fake.write_text(FAKE_TRAIN)
    out, work = tmp_path / "out", tmp_path / "work"
    result = run_check(out, "--tiny", "--phases", "compile,curve", "--train-py", str(fake),
                       "--work", str(work), "--keep-work", timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr

    comp = phase(out, "compile")
    assert comp["ok"], comp
    first, second = comp["result"]["runs"]
    assert (first["compile_s"], second["compile_s"]) == (0.4, 0.1)
    assert comp["result"]["second_faster"] and comp["result"]["programs_compiled_again"] == []
    argv1 = json.loads((work / "compile" / "run1" / "argv.json").read_text())
    argv2 = json.loads((work / "compile" / "run2" / "argv.json").read_text())
    assert argv1["cache"] == argv2["cache"] == str(work / "jax-cache")
    extra = argv2["argv"][len(argv1["argv"]) - 2:]  # both end with --run-dir DIR
    for name in ("--actor-lr", "--critic-lr", "--lam"):
        assert name in extra and name not in argv1["argv"]  # traced values only: the same program
    assert {"--no-progress", "--no-save-buffer", "--total-steps"} <= set(argv1["argv"])

    curve = phase(out, "curve")
    assert curve["ok"], curve
    r = curve["result"]
    assert r["returncode"] == 130 and r["sigint_s"] is not None and r["checkpoint_saved_on_sigint"]
    rows = curve_rows(out)
    assert len(rows) >= 2 and r["rows"] == len(rows)
    steps = [int(x["env_steps"]) for x in rows]
    assert steps == sorted(set(steps)) and steps[0] == 8
    assert [float(x["eval_return"]) for x in rows] == [s / 5 for s in steps]
    assert float(rows[0]["critic_loss"]) == r["critic_loss_first"] == r["critic_loss_max"] == 12.5
    assert [float(x["entropy"]) for x in rows] == [3.0 - s / 8 for s in steps]
    assert rows[0]["kernel_value_gain"] == ""  # not logged by this run: an empty cell
    assert r["actor_last"]["entropy"] == 3.0 - steps[-1] / 8 and r["actor_last"]["kernel_cos_spread"] is None
    assert_png(out / "curve.png")
    assert (out / "curve" / "metrics.jsonl").read_text().count("\n") == len(rows)
    md = (out / "summary.md").read_text()
    assert "## compile:" in md and "## curve:" in md and "SIGINT at" in md
    assert "critic loss: first logged 12.5, largest 12.5" in md
    assert "actor at the last log point: entropy" in md and "alpha 0.5" in md
    assert "kernel is flat" not in md  # the SAVGO remark only where kernel diagnostics were logged


def test_after_the_curve_only_the_second_start_up_runs(tmp_path):
    fake = tmp_path / "fake_train.py"
    fake.write_text(FAKE_TRAIN)
    out, work = tmp_path / "out", tmp_path / "work"
    (work / "jax-cache").mkdir(parents=True)
    (work / "jax-cache" / "jit_run_chunk-0-cache").touch()  # a stale entry: each invocation starts cold
    result = run_check(out, "--tiny", "--phases", "curve,compile", "--train-py", str(fake),
                       "--work", str(work), "--keep-work", timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr

    first, second = phase(out, "compile")["result"]["runs"]
    assert first["from_curve"] and first["compile_s"] == 0.4  # the curve's cold start-up
    assert second["compile_s"] == 0.1  # loaded what the curve compiled
    assert not (work / "compile" / "run1").exists()  # no second cold start-up
    argv2 = json.loads((work / "compile" / "run2" / "argv.json").read_text())
    assert "--lam" in argv2["argv"]


def test_curve_png_without_matplotlib(tmp_path, monkeypatch):
    sys.path.insert(0, str(ROOT))
    from benchmarks import gpu_check

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    rows = [{"wall_s": 10.0 + i, "env_steps": 1000 * i, "episode_return": 5.0 * i,
             "eval_return": 7.0 * i if i % 2 else None} for i in range(1, 8)]
    backend = gpu_check.plot_curve(str(tmp_path / "c.png"), rows, "t")
    assert backend.startswith("builtin")
    data = (tmp_path / "c.png").read_bytes()
    width, height = assert_png(tmp_path / "c.png")
    idat = data.index(b"IDAT")
    length = struct.unpack(">I", data[idat - 4:idat])[0]
    pixels = zlib.decompress(data[idat + 4: idat + 4 + length])
    assert len(pixels) == height * (1 + 3 * width)
    assert pixels.count(bytes([31, 119, 180])) > 50  # the eval line was drawn
