"""Hostile model files never run code; every OS error and every untrainable value is one line, exit 2."""
from __future__ import annotations

import base64
import json
import os
import pickle
import shutil
import zipfile
from pathlib import Path

import pytest
import yaml
import torch

from agents import RecurrentPPO
from agents.experiments.runs import CHECKPOINT, read_num_timesteps
from cli_tiny import run_main, tiny_config, train_tiny_run


def _one_line_error(code, capsys, words=()):
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


def _snapshot(root: Path) -> dict:
    return {p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    return train_tiny_run(tmp_path_factory.mktemp("safety"))


# ------------------------------------------------------------------ hostile model files

class _Loud:
    """Unpickling runs a shell command that creates the marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class _Stealthy:
    """Unpickling creates the marker and returns the original object, so nothing looks wrong."""

    def __init__(self, marker, original: bytes):
        self.marker, self.original = marker, original

    def __reduce__(self):
        code = (f"(__import__('pathlib').Path({str(self.marker)!r}).touch(), "
                f"__import__('pickle').loads({self.original!r}))[1]")
        return eval, (code,)


def _sb3_zip(model_file: Path, out: Path) -> Path:
    """The model saved by SB3's own save (pickled fields in ``data``), as rims-rl wrote it before."""
    from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm

    from envs import make_vec_env

    env = make_vec_env("RedBallDistractors-v0", n_envs=2, training=False)
    model = RecurrentPPO.load(model_file, env=env)
    OnPolicyAlgorithm.save(model, out)
    env.close()
    return out


def _rewrite_data(path: Path, change) -> None:
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    data = json.loads(members["data"])
    change(data)
    members["data"] = json.dumps(data).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)


def _replace_member(path: Path, name: str, content: bytes) -> None:
    with zipfile.ZipFile(path) as archive:
        members = {n: archive.read(n) for n in archive.namelist()}
    members[name] = content
    with zipfile.ZipFile(path, "w") as archive:
        for n, c in members.items():
            archive.writestr(n, c)


def _hostile_legacy(model_file, out, marker, stealthy):
    """An SB3-format zip whose ``observation_space`` pickle runs code (a field SB3 unpickles on load)."""
    _sb3_zip(model_file, out)

    def poison(data):
        original = base64.b64decode(data["observation_space"][":serialized:"])
        payload = _Stealthy(marker, original) if stealthy else _Loud(marker)
        data["observation_space"][":serialized:"] = base64.b64encode(pickle.dumps(payload)).decode()

    _rewrite_data(out, poison)
    return out


def test_the_payload_runs_under_plain_sb3_loading(trained_run, tmp_path):
    """The test files are real attacks: SB3's own loader runs them (so the tests below can fail)."""
    from stable_baselines3.common.save_util import load_from_zip_file

    for stealthy in (False, True):
        marker = tmp_path / f"marker{stealthy}"
        hostile = _hostile_legacy(trained_run / "model.zip", tmp_path / f"evil{stealthy}.zip", marker, stealthy)
        data, _, _ = load_from_zip_file(hostile)
        assert marker.exists()
        assert stealthy == (getattr(data["observation_space"], "shape", None) == (3, 7, 7))


@pytest.mark.parametrize("stealthy", [False, True], ids=["loud", "stealthy"])
def test_hostile_pickles_in_known_fields_are_never_unpickled(trained_run, tmp_path, capsys, stealthy):
    """evaluate, record, train --resume and RecurrentPPO.load read such a file safely or refuse it."""
    marker = tmp_path / "marker"
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    hostile = _hostile_legacy(trained_run / "model.zip", run / "model.zip", marker, stealthy)
    shutil.copy(hostile, run / CHECKPOINT)

    with pytest.raises(ValueError, match="SB3's format"):
        RecurrentPPO.load(hostile)  # no env: the spaces exist only as pickles, which are never read
    from envs import make_vec_env

    env = make_vec_env("RedBallDistractors-v0", n_envs=2, training=False)
    assert RecurrentPPO.load(hostile, env=env).num_timesteps == 32  # spaces from the env
    env.close()
    assert run_main(["evaluate", "--model", run, "--shifts", "none", "--episodes", 1, "--out", tmp_path / "ev"]) == 0
    assert run_main(["record", "--model", run, "--out", tmp_path / "ep.gif", "--max-steps", 3]) == 0
    assert run_main(["train", "--resume", run, "--timesteps", 64, "--no-progress"]) == 0
    assert read_num_timesteps(run / CHECKPOINT) == 64
    assert not marker.exists()


def test_unexpected_serialized_fields_are_refused(trained_run, tmp_path, capsys):
    marker = tmp_path / "marker"
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    legacy = _sb3_zip(trained_run / "model.zip", run / "model.zip")
    payload = base64.b64encode(pickle.dumps(_Loud(marker))).decode()
    _rewrite_data(legacy, lambda d: d.update(evil={":type:": "<class 'int'>", ":serialized:": payload}))
    shutil.copy(legacy, run / CHECKPOINT)
    before = _snapshot(run)
    with pytest.raises(ValueError, match="unexpected serialized field.*evil"):
        RecurrentPPO.load(legacy)
    _one_line_error(run_main(["evaluate", "--model", run]), capsys, ["evil", "refused"])
    _one_line_error(run_main(["record", "--model", run, "--out", tmp_path / "x.gif"]), capsys, ["evil"])
    _one_line_error(run_main(["train", "--resume", run, "--timesteps", 64, "--no-progress"]), capsys, ["evil"])
    assert _snapshot(run) == before and not marker.exists()

    # the same in the new format: a field it does not define
    new = tmp_path / "new.zip"
    shutil.copy(trained_run / "model.zip", new)
    _rewrite_data(new, lambda d: d.update(observation_space={":serialized:": payload}))
    with pytest.raises(ValueError, match="space description"):
        RecurrentPPO.load(new)
    _rewrite_data(new, lambda d: d.update(evil=1))
    with pytest.raises(ValueError, match="unexpected field.*evil"):
        RecurrentPPO.load(new)
    assert not marker.exists()


def test_hostile_tensor_files_are_refused(trained_run, tmp_path, capsys):
    """policy.pth is read with torch.load(weights_only=True): a pickled object is refused."""
    marker = tmp_path / "marker"
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    for name in ("policy.pth", "policy.optimizer.pth"):
        for target in (run / "model.zip", run / CHECKPOINT):
            shutil.copy(trained_run / "model.zip", target)
            _replace_member(target, name, pickle.dumps(_Loud(marker)))
        with pytest.raises(Exception):
            RecurrentPPO.load(run / "model.zip")
        _one_line_error(run_main(["evaluate", "--model", run]), capsys, ["cannot load model"])
        _one_line_error(run_main(["train", "--resume", run, "--timesteps", 64, "--no-progress"]), capsys,
                        ["cannot load model"])
    assert not marker.exists()


def test_model_files_hold_no_pickles_and_round_trip(trained_run, tmp_path):
    """data is plain JSON (spaces, schedules, core config); weights and optimizer state survive."""
    from stable_baselines3.common.env_util import make_vec_env as sb3_vec_env

    with zipfile.ZipFile(trained_run / "model.zip") as archive:
        assert sorted(archive.namelist()) == ["data", "policy.optimizer.pth", "policy.pth"]
        text = archive.read("data").decode()
    assert ":serialized:" not in text
    data = json.loads(text)
    assert data["core"] == "lstm" and data["core_kwargs"] == {"hidden_size": 12}
    assert data["observation_space"]["type"] == "Box" and data["learning_rate"]["linear"]["start"] > 0
    model = RecurrentPPO.load(trained_run / "model.zip")
    model.save(tmp_path / "again.zip")
    again = RecurrentPPO.load(tmp_path / "again.zip")
    for a, b in zip(model.policy.state_dict().values(), again.policy.state_dict().values()):
        assert torch.equal(a, b)
    opt_a, opt_b = model.policy.optimizer.state_dict(), again.policy.optimizer.state_dict()
    assert opt_a["param_groups"] == opt_b["param_groups"]
    for key in opt_a["state"]:
        assert torch.equal(opt_a["state"][key]["exp_avg_sq"], opt_b["state"][key]["exp_avg_sq"])
    assert (again.num_timesteps, again.lr_schedule(0.5), again.clip_range(1.0)) == (
        model.num_timesteps, model.lr_schedule(0.5), model.clip_range(1.0))
    with pytest.raises(ValueError, match="[Oo]bservation spaces do not match"):
        RecurrentPPO.load(trained_run / "model.zip", env=sb3_vec_env("CartPole-v1", n_envs=1))


def test_spaces_round_trip_through_json():
    """Box (uniform and per-element bounds), Discrete, MultiDiscrete, MultiBinary, Text, Dict, Tuple."""
    import numpy as np
    from gymnasium import spaces

    from agents.serialization import UnsafeModelError, space_from_json, space_to_json

    cases = [
        spaces.Box(0, 255, (7, 7, 3), np.uint8),
        spaces.Box(np.array([-1.0, -np.inf]), np.array([1.0, np.inf]), dtype=np.float32),
        spaces.Discrete(5, start=1), spaces.MultiDiscrete([3, 4]), spaces.MultiBinary(6),
        spaces.Dict({"image": spaces.Box(0, 255, (7, 7, 3), np.uint8), "mission": spaces.Text(20)}),
        spaces.Tuple([spaces.Discrete(2), spaces.Box(-1, 1, (2,))]),
    ]
    for space in cases:
        assert space_from_json(json.loads(json.dumps(space_to_json(space)))) == space
    for bad in ({"type": "Box", "dtype": "object", "shape": [1], "low": 0, "high": 1}, {"type": "Graph"}, [1]):
        with pytest.raises(UnsafeModelError):
            space_from_json(bad)


# ------------------------------------------------------------------ bad values and paths: one line, exit 2

UNTRAINABLE = [
    (["--set", "ppo.n_epochs=0"], ["ppo.n_epochs", "0"]),
    (["--set", "ppo.clip_range=-0.1"], ["ppo.clip_range", "-0.1"]),
    (["--set", "ppo.gamma=0"], ["ppo.gamma", "(0, 1]"]),
    (["--set", "ppo.gamma=1.5"], ["ppo.gamma", "1.5"]),
    (["--set", "ppo.learning_rate=.nan"], ["ppo.learning_rate", "finite"]),
    (["--eval-freq", "-1"], ["eval.freq", "-1"]),
    (["--eval-freq", "16", "--eval-episodes", "0"], ["eval.episodes", "0"]),
    (["--timesteps", str(2**63)], ["timesteps", "2**62"]),
    (["--shifts", "distractors=1,distractors=2"], ["distractors", "twice"]),
    (["--seed", "-1"], ["seed", "-1"]),
    (["--set", "policy_kwargs.bogus=1"], ["policy_kwargs.bogus", "net_arch", "features_dim"]),
    (["--set", "policy_kwargs.features_dim=-3"], ["policy_kwargs.features_dim", "-3"]),
    (["--set", "policy_kwargs.net_arch=[8, 0]"], ["policy_kwargs.net_arch"]),
    (["--set", "policy_kwargs.optimizer_class=Evil"], ["optimizer_class", "Adam"]),
    (["--set", "policy_kwargs.optimizer_kwargs={betas: 3}"], ["optimizer_kwargs"]),
    (["--set", "policy_kwargs.input_rows=true", "--core", "lstm"], ["input_rows", "rims"]),
    (["--set", "ppo.n_minibatches=1000"], ["n_minibatches=1000"]),
]


@pytest.mark.parametrize("args, words", UNTRAINABLE, ids=[" ".join(a) for a, _ in UNTRAINABLE])
def test_values_that_cannot_train_are_refused_before_anything_is_created(args, words, tmp_path, capsys):
    code = run_main(["train", "--config", tiny_config(tmp_path), "--logdir", tmp_path / "runs", *args])
    _one_line_error(code, capsys, words)
    assert not (tmp_path / "runs").exists()


def test_policy_kwargs_take_every_policy_argument(tmp_path):
    """net_arch, optimizer_class and optimizer_kwargs reach the policy (and survive save/load)."""
    cfg = tiny_config(tmp_path)
    assert run_main(["train", "--config", cfg, "--logdir", tmp_path / "runs", "--core", "lstm", "--timesteps", 32,
                     "--no-progress", "--set", "policy=MlpPolicy", "--set", "policy_kwargs.net_arch=[8, 6]",
                     "--set", "policy_kwargs.optimizer_class=AdamW",
                     "--set", "policy_kwargs.optimizer_kwargs={weight_decay: 0.5}"]) == 0
    (run,) = (tmp_path / "runs").glob("*/lstm/seed0")
    model = RecurrentPPO.load(run / "model.zip")
    linears = [m for m in model.policy.features_extractor.base.modules() if isinstance(m, torch.nn.Linear)]
    assert [m.out_features for m in linears] == [8, 6]
    assert isinstance(model.policy.optimizer, torch.optim.AdamW)
    assert model.policy.optimizer.param_groups[0]["weight_decay"] == 0.5


def test_a_config_whose_base_refers_to_itself(tmp_path, capsys):
    loop = tmp_path / "loop.yaml"
    loop.write_text(f"base: {tmp_path / 'loop'}\ntimesteps: 64\n")
    _one_line_error(run_main(["train", "--config", loop, "--logdir", tmp_path / "runs"]), capsys,
                    ["base", "not a preset", "minigrid"])
    assert not (tmp_path / "runs").exists()


def test_paths_of_the_wrong_kind(trained_run, tmp_path, capsys):
    a_file = tmp_path / "a_file"
    a_file.write_text("keep me")
    cfg = tiny_config(tmp_path)
    _one_line_error(run_main(["train", "--config", cfg, "--logdir", a_file]), capsys, [str(a_file), "not a directory"])
    _one_line_error(run_main(["train", "--config", cfg, "--logdir", a_file / "below"]), capsys, ["not a directory"])
    _one_line_error(run_main(["evaluate", "--model", trained_run, "--out", a_file]), capsys, ["--out", "is a file"])
    _one_line_error(run_main(["compare", trained_run, "--out", a_file]), capsys, ["--out", "is a file"])
    gif_dir = tmp_path / "x.gif"
    gif_dir.mkdir()
    _one_line_error(run_main(["record", "--model", trained_run, "--out", gif_dir]), capsys, ["is a directory"])
    (tmp_path / "out" / "results.csv").mkdir(parents=True)
    _one_line_error(run_main(["evaluate", "--model", trained_run, "--out", tmp_path / "out"]), capsys,
                    ["results.csv", "is a directory"])
    long = tmp_path / ("n" * 300)
    _one_line_error(run_main(["train", "--config", cfg, "--logdir", long]), capsys, ["name too long"])
    _one_line_error(run_main(["evaluate", "--model", trained_run, "--out", long]), capsys, ["name too long"])
    assert a_file.read_text() == "keep me" and not list(tmp_path.glob("n*"))


@pytest.mark.parametrize("args, words", [
    (["record", "--seed", "-1"], ["--seed", "-1"]),
    (["evaluate", "--seed", "-1"], ["--seed", "-1"]),
    (["evaluate", "--n-envs", "0"], ["--n-envs", "0"]),
])
def test_bad_seeds_of_record_and_evaluate(args, words, trained_run, capsys):
    before = _snapshot(trained_run)
    _one_line_error(run_main([args[0], "--model", trained_run, *args[1:]]), capsys, words)
    assert _snapshot(trained_run) == before


def test_compare_with_absurd_reps_and_out_of_memory(trained_run, capsys, monkeypatch):
    _one_line_error(run_main(["compare", trained_run, "--reps", 1_000_000_000]), capsys, ["--reps", "1000000000"])
    import agents.experiments.compare as compare

    def exhaust(*args, **kwargs):
        raise MemoryError()

    monkeypatch.setattr(compare, "compare_runs", exhaust)
    _one_line_error(run_main(["compare", trained_run]), capsys, ["out of memory"])

    def recurse(*args, **kwargs):
        return recurse()

    monkeypatch.setattr(compare, "compare_runs", recurse)
    _one_line_error(run_main(["compare", trained_run]), capsys, ["nested too deeply"])


def test_a_closed_output_pipe_is_one_line(tmp_path):
    """`rims-rl presets | head -0`: the pipe is closed before the first write."""
    import subprocess
    import sys

    from cli_tiny import REPO, SCRIPT

    result = subprocess.run(["bash", "-c", f"'{sys.executable}' '{SCRIPT}' presets | head -0; exit ${{PIPESTATUS[0]}}"],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr, result.stderr


def test_empty_or_cut_config_yaml_is_one_line(trained_run, tmp_path, capsys):
    run = tmp_path / "lstm" / "seed0"
    shutil.copytree(trained_run, run)
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    damaged = [yaml.safe_dump({**cfg, "eval": {}}).encode(), yaml.safe_dump({**cfg, "ppo": 3}).encode()]
    # empty, cut off, not text, a section emptied, a section that is not a mapping
    for content in (b"", b"env: RedBallDistractors-v0\n", b"\x00\xff garbage", *damaged):
        (run / "config.yaml").write_bytes(content)
        before = _snapshot(run)
        _one_line_error(run_main(["evaluate", "--model", run]), capsys, ["config"])
        _one_line_error(run_main(["record", "--model", run]), capsys, ["config"])
        _one_line_error(run_main(["train", "--resume", run]), capsys, ["config"])
        _one_line_error(run_main(["compare", run]), capsys, ["config"])
        assert _snapshot(run) == before


# ------------------------------------------------------------------ resume rules

def test_resume_rules(trained_run, tmp_path, capsys):
    run = tmp_path / "lstm" / "seed0"
    shutil.copytree(trained_run, run)
    config = (run / "config.yaml").read_bytes()
    before = _snapshot(run)
    # a lower budget than the run has done (32 steps)
    _one_line_error(run_main(["train", "--resume", run, "--timesteps", 16]), capsys, ["16", "32 steps", "at least 32"])
    _one_line_error(run_main(["train", "--resume", run, "--config", "minigrid"]), capsys, ["--config"])
    assert _snapshot(run) == before
    # the same budget: nothing to train, config.yaml untouched (not even rewritten)
    mtime = (run / "config.yaml").stat().st_mtime_ns
    assert run_main(["train", "--resume", run, "--no-progress"]) == 0
    assert (run / "config.yaml").read_bytes() == config and (run / "config.yaml").stat().st_mtime_ns == mtime
    # a stale temp file of a killed checkpoint write is removed; a higher budget is written down
    stale = run / "checkpoints" / ".last.zip.k1ll3d.tmp"
    stale.write_bytes(b"half a checkpoint")
    assert run_main(["train", "--resume", run, "--timesteps", 64, "--no-progress"]) == 0
    assert not stale.exists() and read_num_timesteps(run / CHECKPOINT) == 64
    assert b"timesteps: 64" in (run / "config.yaml").read_bytes()
    assert not list(run.rglob("*.tmp"))


def test_remove_stale_temp_files_keeps_other_files(tmp_path):
    from agents.experiments.files import atomic_write_text, remove_stale_temp_files

    atomic_write_text(tmp_path / "a" / "config.yaml", "x: 1\n")
    stale = [tmp_path / "a" / ".config.yaml.abc123.tmp", tmp_path / ".results.json.zz.tmp"]
    keep = [tmp_path / "notes.tmp", tmp_path / ".hidden", tmp_path / "a" / "config.yaml"]
    for path in stale + keep[:2]:
        path.write_text("x")
    assert sorted(remove_stale_temp_files(tmp_path)) == sorted(stale)
    assert all(p.exists() for p in keep) and not any(p.exists() for p in stale)


# ------------------------------------------------------------------ full and read-only file systems

def _mount_tmpfs(path: Path, size: str) -> None:
    """Mount a small tmpfs at ``path`` (skip the test where mounting is not permitted)."""
    import subprocess

    path.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({result.stderr.strip() or result.returncode}); "
                    f"the RLIMIT_FSIZE test covers full disks")


def _umount(path: Path) -> None:
    import subprocess

    subprocess.run(["umount", "-l", str(path)], capture_output=True)


def _fill(disk: Path) -> None:
    """Write a filler file until the file system is full."""
    with open(disk / "filler", "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
                f.flush()
        except OSError:
            pass


def _script(args, **kwargs):
    import subprocess
    import sys

    from cli_tiny import REPO, SCRIPT

    env = {**os.environ, "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=180, **kwargs)


def _one_line_exit_2(result, words=()):
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])


def _without(snapshot: dict, name: str) -> dict:
    return {p: c for p, c in snapshot.items() if p.name != name}


def _without_tb(snapshot: dict, root: Path) -> dict:
    """The snapshot less TensorBoard files (TensorBoard may append what fits on a full disk)."""
    return {p: c for p, c in snapshot.items() if "tb" not in p.relative_to(root).parts}


def _evaluated_copy(trained_run: Path, root: Path) -> Path:
    """A copy of the trained run at ``root/lstm/seed0``, evaluated once (so it has results to lose)."""
    run = root / "lstm" / "seed0"
    shutil.copytree(trained_run, run)
    assert run_main(["evaluate", "--model", run, "--shifts", "none", "--episodes", 1]) == 0
    return run


def test_a_full_disk_keeps_every_old_file_whole(trained_run, tmp_path, capsys):
    disk = tmp_path / "disk"
    _mount_tmpfs(disk, "16m")
    try:
        run = _evaluated_copy(trained_run, disk)
        _fill(disk)
        before = _without(_snapshot(disk), "filler")
        capsys.readouterr()
        for args in (["evaluate", "--model", run, "--shifts", "none", "--episodes", 2],
                     ["compare", run, "--out", disk / "cmp"],
                     ["train", "--config", tiny_config(tmp_path), "--logdir", disk / "new", "--no-progress"],
                     ["train", "--resume", run, "--timesteps", 64, "--no-progress"],
                     ["record", "--model", run, "--max-steps", 5]):
            _one_line_error(run_main(args), capsys, ["No space left on device"])
        assert not (disk / "new").exists()
        after = _without(_snapshot(disk), "filler")
        assert _without_tb(after, disk) == _without_tb(before, disk)
        assert not list(disk.rglob("*.tmp"))
    finally:
        _umount(disk)


def _limit_file_size(limit: int):
    def apply() -> None:
        import resource
        import signal

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG instead of killing the process
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def test_a_file_size_limit_acts_like_a_full_disk(trained_run, tmp_path):
    """RLIMIT_FSIZE in the child: every write beyond 64 bytes fails (EFBIG), as on a full disk."""
    run = _evaluated_copy(trained_run, tmp_path)
    tiny_config(tmp_path)
    before = _snapshot(tmp_path)
    limited = _limit_file_size(64)
    _one_line_exit_2(_script(["evaluate", "--model", run, "--shifts", "none", "--episodes", 2], preexec_fn=limited),
                     ["File too large"])
    _one_line_exit_2(_script(["train", "--config", tmp_path / "tiny.yaml", "--logdir", tmp_path / "new",
                              "--no-progress"], preexec_fn=limited), ["File too large"])
    assert not (tmp_path / "new").exists()
    after = _snapshot(tmp_path)
    assert _without_tb(after, tmp_path) == _without_tb(before, tmp_path)
    assert not list(tmp_path.rglob("*.tmp"))


def test_a_read_only_file_system(trained_run, tmp_path, capsys):
    """Root ignores file modes, so the test uses a read-only mount."""
    import subprocess

    disk = tmp_path / "ro"
    _mount_tmpfs(disk, "16m")
    try:
        run = _evaluated_copy(trained_run, disk)
        result = subprocess.run(["mount", "-o", "remount,ro", str(disk)], capture_output=True, text=True)
        if result.returncode != 0:
            pytest.skip(f"cannot remount read-only: {result.stderr.strip()}")
        before = _snapshot(disk)
        capsys.readouterr()
        for args in (["evaluate", "--model", run, "--shifts", "none", "--episodes", 1],
                     ["record", "--model", run, "--max-steps", 3],
                     ["compare", run],
                     ["train", "--resume", run, "--timesteps", 64, "--no-progress"],
                     ["train", "--config", tiny_config(tmp_path), "--logdir", disk / "new", "--no-progress"]):
            _one_line_error(run_main(args), capsys, ["Read-only file system"])
        assert _snapshot(disk) == before
    finally:
        _umount(disk)


def test_schedules_round_trip_through_json():
    """Numbers and LinearSchedule exactly; any other callable as samples, linear in between."""
    from stable_baselines3.common.utils import FloatSchedule, LinearSchedule

    from agents.serialization import schedule_from_json, schedule_to_json

    def round_trip(value):
        return schedule_from_json(json.loads(json.dumps(schedule_to_json(value))), "learning_rate")

    assert round_trip(3e-4) == 3e-4 and round_trip(None) is None
    linear = round_trip(FloatSchedule(LinearSchedule(1e-3, 0.0, 0.5)))
    assert isinstance(linear, LinearSchedule) and linear(1.0) == 1e-3 and linear(0.4) == 0.0
    table = round_trip(lambda progress: 0.1 * progress ** 2)
    for p in (0.0, 0.25, 0.5, 1.0):
        assert table(p) == pytest.approx(0.1 * p ** 2, abs=1e-5)
    with pytest.raises(ValueError, match="unexpected value"):
        schedule_from_json({"eval": "os.system('x')"}, "learning_rate")
