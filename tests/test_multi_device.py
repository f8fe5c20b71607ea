"""Data parallelism over devices, with 4 fake CPU devices in a subprocess (tests/sharded_run.py):
the sharded program on 4 devices computes what the same 4 shards compute on one device, and
learning still works."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(*args, timeout):
    result = subprocess.run([sys.executable, os.path.join(ROOT, "tests", "sharded_run.py"), *args],
                            capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_four_devices_match_four_shards_on_one_device(tmp_path):
    out = tmp_path / "runs.npz"
    _run("compare", str(out), timeout=1200)
    runs = np.load(out)
    assert int(runs["buffer_devices"]) == 4  # the replay buffer really is split over devices
    assert bool(runs["agent_replicated"])  # and the parameters are the same everywhere
    one = {k[len("one_device"):]: v for k, v in runs.items() if k.startswith("one_device")}
    four = {k[len("four_devices"):]: v for k, v in runs.items() if k.startswith("four_devices")}
    assert one.keys() == four.keys() and len(one) > 50
    learned = [k for k in one if "actor_opt" in k and "mu" in k]
    assert learned and all(np.any(one[k] != 0) for k in learned)  # the updates did run
    for name in one:
        if one[name].dtype.kind == "f":
            np.testing.assert_allclose(four[name], one[name], rtol=1e-4, atol=1e-5, err_msg=name)
        else:
            np.testing.assert_array_equal(four[name], one[name], err_msg=name)


@pytest.mark.slow
def test_inverted_pendulum_still_learns_on_four_devices(tmp_path):
    summary = json.loads(_run("learn", str(tmp_path), timeout=3000).strip().splitlines()[-1])
    assert summary["eval_return"] >= 950, summary


@pytest.mark.parametrize("args, message", [
    (["--devices", "3"], "--num-envs (16) must divide by --devices (3)"),
    (["--devices", "2", "--num-envs", "16", "--buffer-size", "1001"], "--buffer-size (1001) must divide"),
    (["--devices", "64"], "--devices 64 but jax sees"),
])
def test_device_count_errors(args, message, tmp_path, capsys):
    extra = [] if "--buffer-size" in args or args[1] == "3" else ["--num-envs", "64", "--buffer-size", "6400",
                                                                 "--batch-size", "128", "--geometry-batch", "128",
                                                                 "--actor-batch", "64"]
    assert train.main(args + extra + ["--run-dir", str(tmp_path / "run")]) == 2
    assert message in capsys.readouterr().err
