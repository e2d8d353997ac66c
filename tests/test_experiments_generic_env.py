"""Any gymnasium env from the command line: a registered id and a user's `module:EnvId` train, evaluate
(unshifted only: no shifts are defined) and compare on returns."""
import json
import os
import subprocess
import sys

from agents.experiments.runs import read_run_config


def test_cartpole_trains_evaluates_and_compares_with_an_mlp_policy(tmp_path, run_main, tiny_config, capsys):
    cfg = tiny_config(tmp_path)
    logdir = tmp_path / "runs"
    assert run_main(["train", "--config", cfg, "--env", "CartPole-v1", "--core", "lstm", "none", "--seed", 0, 1,
                     "--logdir", logdir, "--no-progress"]) == 0
    run = logdir / "CartPole-v1" / "lstm" / "seed0"
    assert read_run_config(run)["policy"] == "MlpPolicy"  # auto: a vector observation
    for label in ("lstm", "none"):
        for seed in (0, 1):
            assert run_main(["evaluate", "--model", logdir / "CartPole-v1" / label / f"seed{seed}",
                             "--episodes", 4]) == 0
    results = json.loads((run / "eval" / "results.json").read_text())["results"]
    assert [(r["shift"], r["level"]) for r in results] == [("none", 0)]  # no shifts: the unshifted setting only
    assert results[0]["success_rate"] is None and results[0]["mean_return"] > 0  # returns, no success notion
    assert run_main(["compare", logdir, "--out", tmp_path / "cmp", "--reps", 20]) == 0
    summary = json.loads((tmp_path / "cmp" / "compare.json").read_text())["summary"]
    assert {s["metric"] for s in summary} == {"return", "normalized_score"}
    capsys.readouterr()
    assert run_main(["train", "--config", cfg, "--env", "CartPole-v1", "--shifts", "gravity=1", "--logdir",
                     tmp_path / "bad", "--no-progress"]) == 2
    assert "CartPole-v1 has no shifts" in capsys.readouterr().err


def test_a_users_module_env_trains_and_evaluates_from_its_directory(tmp_path, script, tiny_config):
    (tmp_path / "my_envs.py").write_text(
        "import gymnasium as gym\n"
        "gym.register(id='MyCart-v0', entry_point='gymnasium.envs.classic_control:CartPoleEnv')\n")
    cfg = tiny_config(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(MPLBACKEND="Agg", OMP_NUM_THREADS="1")

    def cli(*argv):
        return subprocess.run([sys.executable, str(script), *map(str, argv)], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=300)

    trained = cli("train", "--config", cfg, "--env", "my_envs:MyCart-v0", "--core", "lstm", "--logdir", "runs",
                  "--no-progress")
    assert trained.returncode == 0, trained.stderr
    run = tmp_path / "runs" / "my_envs-MyCart-v0" / "lstm" / "seed0"
    assert (run / "model.zip").is_file()
    evaluated = cli("evaluate", "--model", run, "--episodes", 3)
    assert evaluated.returncode == 0, evaluated.stderr
    missing = cli("train", "--config", cfg, "--env", "not_there:MyCart-v0", "--logdir", "runs2", "--no-progress")
    assert missing.returncode == 2 and len(missing.stderr.strip().splitlines()) == 1
    assert "cannot import module 'not_there'" in missing.stderr


def test_a_dict_observation_env_trains_with_the_multi_input_policy(tmp_path, run_main, tiny_config, monkeypatch):
    (tmp_path / "dict_envs.py").write_text(
        "import gymnasium as gym\n"
        "import numpy as np\n"
        "from gymnasium import spaces\n"
        "class DictCart(gym.ObservationWrapper):\n"
        "    def __init__(self):\n"
        "        super().__init__(gym.make('CartPole-v1'))\n"
        "        box = spaces.Box(-np.inf, np.inf, (2,), np.float32)\n"
        "        self.observation_space = spaces.Dict({'position': box, 'velocity': box})\n"
        "    def observation(self, obs):\n"
        "        return {'position': obs[[0, 2]], 'velocity': obs[[1, 3]]}\n"
        "gym.register(id='DictCart-v0', entry_point=DictCart)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    logdir = tmp_path / "runs"
    assert run_main(["train", "--config", tiny_config(tmp_path), "--env", "dict_envs:DictCart-v0", "--core", "gru",
                     "--logdir", logdir, "--no-progress"]) == 0
    run = logdir / "dict_envs-DictCart-v0" / "gru" / "seed0"
    assert read_run_config(run)["policy"] == "MultiInputPolicy"
    assert run_main(["evaluate", "--model", run, "--episodes", 3]) == 0
