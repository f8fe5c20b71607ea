"""Bad input to train.py: a one-line error and exit code 2, before anything is built."""
import subprocess
import sys

import pytest

import train
from savgo_mjx.config import Config, ConfigError, defaults_for, load_toml, validate
from savgo_mjx.preflight import check_memory


def test_a_choice_outside_its_literal_values_is_refused():
    # e.g. a Config built in code; tyro checks only the command line's values
    with pytest.raises(ConfigError, match="--rk4-stage-unroll must be one of 1, 2, 3, got 0"):
        validate(Config(rk4_stage_unroll=0))
    with pytest.raises(ConfigError, match="--kernel must be one of softmax, uniform, argmax, got 'soft'"):
        validate(Config(kernel="soft"))


@pytest.mark.parametrize("args, message", [
    (["--env", "pong"], "unknown env 'pong'; valid names:"),
    (["--num-envs", "0"], "--num-envs must be positive"),
    (["--batch-size", "512", "--buffer-size", "256"], "--batch-size (512) is larger than --buffer-size"),
    (["--actor-lr", "-0.001"], "--actor-lr must be >= 0"),
    (["--config", "no/such/file.toml"], "config file not found"),
    (["--ablation", "Z9"], "unknown ablation 'Z9'"),
    (["--buffer-size", "100_000_000_000"], "try --buffer-size"),
    (["--resume"], "--resume needs --run-dir"),
    (["--n-step", "0"], "--n-step must be positive"),
    (["--critic-hidden", "0"], "--critic-hidden must be positive"),
    (["--adam-b2", "1.0"], "--adam-b2 must be in [0, 1), got 1.0"),
    (["--log-std-max", "-6"], "--log-std-max must be in (-5, 2]"),
    (["--n-step", "3", "--num-envs", "16", "--buffer-size", "1000"],
     "must be a multiple of --num-envs (16); e.g. --buffer-size 992"),
    (["--num-seeds", "0"], "--num-seeds must be positive"),
    (["--sweep", "hidden=64,128"], "cannot sweep 'hidden' in one program; sweepable: gamma"),
    (["--sweep", "lam"], "--sweep entries look like NAME=V1,V2"),
    (["--sweep", "lam=1,x"], "--sweep lam: values must be numbers"),
    (["--sweep", "gamma=0.99,1.5"], "--gamma must be in [0, 1], got 1.5"),
    (["--sweep", "embed_target_rate=0.005,0"], "--embed-target-rate must be in (0, 1], got 0.0"),
    (["--eval-backend", "gymnasium", "--eval-workers", "0"], "--eval-workers must be positive"),
    (["--updates-per-iter", "4", "--policy-frequency", "3"],
     "--updates-per-iter (4) must divide by --policy-frequency (3)"),
    (["--policy-frequency", "0"], "--policy-frequency must be positive"),
])
def test_bad_input_is_one_line_and_exit_code_2(args, message, capsys, tmp_path):
    code = train.main(args + ["--run-dir", str(tmp_path / "run")] if "--resume" not in args else args)
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert not (tmp_path / "run").exists()  # refused before creating anything


def test_unknown_key_in_config_file(tmp_path, capsys):
    path = tmp_path / "bad.toml"
    path.write_text("num_envs = 4\nlearning_rate = 3e-4\n")
    assert train.main(["--config", str(path)]) == 2
    assert "unknown key(s) learning_rate" in capsys.readouterr().err


def test_a_choice_in_a_config_file_is_checked_before_the_flags_are_parsed(tmp_path, capsys):
    path = tmp_path / "bad.toml"
    path.write_text('update_precision = "fp16"\n')
    assert train.main(["--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err == f"error: --update-precision must be one of float32, tensorfloat32 in {path}, got 'fp16'\n"


def test_no_traceback_from_the_command_line(tmp_path):
    result = subprocess.run([sys.executable, "train.py", "--env", "pong"], capture_output=True, text=True)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "unknown env 'pong'" in result.stderr


def test_layering_preset_then_file_then_flags(tmp_path):
    preset = load_toml("configs/inverted_pendulum.toml")
    assert defaults_for("inverted_pendulum").num_envs == preset["num_envs"]
    extra = tmp_path / "extra.toml"
    extra.write_text("num_envs = 3\nupdates_per_iter = 7\n")
    cfg = train.parse(["--config", str(extra), "--num-envs", "5"])
    assert (cfg.num_envs, cfg.updates_per_iter, cfg.num_candidates) == (5, 7, preset["num_candidates"])
    assert train.parse(["--ablation", "B1"]).kernel == "uniform"
    assert train.parse(["--ablation=A4"]).fixed_beta == 1.0


def test_every_preset_is_valid():
    import envs

    for name in envs.REGISTRY:
        validate(defaults_for(name))


def test_memory_preflight_suggests_a_capacity_that_fits():
    cfg = Config(buffer_size=10_000_000, num_envs=1024)
    with pytest.raises(ConfigError, match="try --buffer-size") as info:
        check_memory(cfg, 348, 17, env_state_bytes=100_000, free_bytes=8 * 1024**3)
    suggested = int(str(info.value).split("try --buffer-size ")[1].replace("_", ""))
    assert 0 < suggested < cfg.buffer_size
    import dataclasses

    check_memory(dataclasses.replace(cfg, buffer_size=suggested), 348, 17, 100_000, free_bytes=8 * 1024**3)


def test_memory_preflight_counts_one_device_of_a_data_parallel_run():
    """With --devices D each device holds 1/D of the buffer and envs: a run that cannot fit on
    one device fits on four, and the suggested --buffer-size counts all four shards."""
    import dataclasses

    from savgo_mjx.replay import transition_bytes

    def suggested(cfg):
        with pytest.raises(ConfigError, match="try --buffer-size") as info:
            check_memory(cfg, 348, 17, env_state_bytes=100_000, free_bytes=8 * 1024**3)
        return int(str(info.value).split("try --buffer-size ")[1].replace("_", ""))

    one = Config(buffer_size=10_000_000, num_envs=1024)
    four = dataclasses.replace(one, devices=4)
    suggested(one)  # 10M transitions do not fit on one 8 GB device...
    parts = check_memory(four, 348, 17, env_state_bytes=100_000, free_bytes=8 * 1024**3)  # ...on four
    assert parts["buffer"] == 2_500_000 * transition_bytes(348, 17)
    big = dataclasses.replace(four, buffer_size=40_000_000)
    assert suggested(big) > 3 * suggested(dataclasses.replace(big, devices=1))
    check_memory(dataclasses.replace(four, buffer_size=suggested(big) // 4 * 4), 348, 17, 100_000,
                 free_bytes=8 * 1024**3)
