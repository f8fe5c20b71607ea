"""Learning on CPU, through the ablation command on its tiny preset
(configs/ablations/inverted_pendulum.toml: small networks and a high replay ratio keep it to
minutes on 2 cores; everything else is the paper's algorithm with its defaults): SAVGO and SAC
each solve InvertedPendulum-v5; the uniform kernel (ablation B1), which cuts the value signal out
of the actor update, does not on the same budget. The SAVGO policy, exported with the run,
keeps >= 95% of its MJX eval return in Gymnasium's own InvertedPendulum-v5."""
import csv
import os

from savgo_mjx import ablate
from savgo_mjx.evaluate import evaluate_run


def test_tiny_ablation_study_on_inverted_pendulum(tmp_path, capsys):
    out = str(tmp_path / "study")
    assert ablate.main(["--env", "inverted_pendulum", "--out", out]) == 0
    with open(os.path.join(out, "results.csv")) as f:
        rows = {row["setting"]: row for row in csv.DictReader(f)}
    final = {name: float(row["final_mean"]) for name, row in rows.items()}
    assert set(final) == {"SAVGO", "SAC", "B1"}, final
    assert all(row["seeds"] == "1" and float(row["steps"]) == 20_000 for row in rows.values()), rows
    assert final["SAVGO"] >= 950, final
    assert final["SAC"] >= 950, final
    assert final["B1"] < 200, final  # a random policy scores about 5-10
    assert os.path.getsize(os.path.join(out, "inverted_pendulum.png")) > 0
    assert "| SAVGO | 1 |" in open(os.path.join(out, "results.md")).read()
    # The exported SAVGO policy transfers to Gymnasium's own InvertedPendulum-v5 (MuJoCo C).
    [transfer] = evaluate_run(os.path.join(out, "savgo"), episodes=5)
    assert transfer["mjx_eval_steps"] == 20_000 and transfer["ratio"] >= 0.95, transfer
