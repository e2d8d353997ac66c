"""--device auto|cpu|cuda|cuda:N and the `device` config key; CUDA paths run only where torch sees a GPU."""
from __future__ import annotations

import pytest
import torch

from agents.experiments.devices import check_device_name, resolve_device
from agents.experiments.runs import FINAL_MODEL, load_model, read_run_config
from rims_rl.errors import UserError

HAS_CUDA = torch.cuda.is_available()


def test_device_names():
    assert check_device_name("CUDA:1") == "cuda:1" and check_device_name(" auto ") == "auto"
    for bad in ("gpu", "cuda:", "cuda:x", "cpu:0", ""):
        with pytest.raises(UserError, match="valid: auto, cpu, cuda, cuda:N"):
            check_device_name(bad)
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if HAS_CUDA else "cpu")


@pytest.mark.skipif(HAS_CUDA, reason="this machine has CUDA")
@pytest.mark.parametrize("args", [
    ["train", "--device", "cuda"],
    ["train", "--set", "device=cuda:0"],
])
def test_explicit_cuda_without_a_gpu_is_one_line_and_creates_nothing(args, tmp_path, capsys, run_main, tiny_config):
    code = run_main([*args, "--config", tiny_config(tmp_path), "--logdir", tmp_path / "runs", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert "CUDA is not available" in err and "--device cpu" in err
    assert not (tmp_path / "runs").exists()


def test_device_key_flag_and_resume_on_another_device(tmp_path, capsys, tiny_config, run_main):
    tiny = tiny_config(tmp_path, timesteps=32)
    assert run_main(["train", "--config", tiny, "--core", "lstm", "--device", "cpu", "--logdir", tmp_path / "runs",
                     "--no-progress"]) == 0
    (run,) = (tmp_path / "runs").glob("*/lstm/seed0")
    assert read_run_config(run)["device"] == "cpu"
    assert run_main(["train", "--config", tiny, "--core", "gru", "--set", "device=gpu",
                     "--logdir", tmp_path / "runs"]) == 2
    assert "unknown device 'gpu'" in capsys.readouterr().err
    # --device with --resume says where to continue, it is not a config change
    assert run_main(["train", "--resume", run, "--timesteps", 64, "--device", "auto", "--no-progress"]) == 0
    assert read_run_config(run)["device"] == "cpu"
    if not HAS_CUDA:
        assert run_main(["evaluate", "--model", run, "--device", "cuda:0", "--episodes", 1, "--shifts", "none"]) == 2
        assert "CUDA is not available" in capsys.readouterr().err
        assert not (run / "eval").exists()
    assert run_main(["evaluate", "--model", run, "--device", "cpu", "--episodes", 1, "--shifts", "none"]) == 0


@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU (not run on the 2-core CPU machine)")
def test_a_model_trained_on_the_gpu_evaluates_on_the_cpu(tmp_path, tiny_config, run_main):
    tiny = tiny_config(tmp_path, timesteps=32)
    assert run_main(["train", "--config", tiny, "--core", "rims", "--device", "cuda", "--logdir", tmp_path / "runs",
                     "--no-progress"]) == 0
    (run,) = (tmp_path / "runs").glob("*/rims/seed0")
    assert load_model(run / FINAL_MODEL, device="cpu").device.type == "cpu"
    assert run_main(["evaluate", "--model", run, "--device", "cpu", "--episodes", 1, "--shifts", "none"]) == 0
    assert run_main(["record", "--model", run, "--device", "cuda", "--max-steps", 5]) == 0
