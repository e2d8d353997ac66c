"""Hostile model files never run code: evaluate, record, train --resume and RecurrentPPO.load read them
safely or refuse them in one line; the files rims-rl writes hold no pickles."""
from __future__ import annotations

import base64
import json
import os
import pickle
import shutil
import zipfile
from pathlib import Path

import pytest
import torch

from agents import RecurrentPPO
from agents.experiments.runs import CHECKPOINT, read_num_timesteps


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
def test_hostile_pickles_in_known_fields_are_never_unpickled(trained_run, tmp_path, stealthy, run_main):
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


def test_unexpected_serialized_fields_are_refused(trained_run, tmp_path, snapshot, refused):
    marker = tmp_path / "marker"
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    legacy = _sb3_zip(trained_run / "model.zip", run / "model.zip")
    payload = base64.b64encode(pickle.dumps(_Loud(marker))).decode()
    _rewrite_data(legacy, lambda d: d.update(evil={":type:": "<class 'int'>", ":serialized:": payload}))
    shutil.copy(legacy, run / CHECKPOINT)
    before = snapshot(run)
    with pytest.raises(ValueError, match="unexpected serialized field.*evil"):
        RecurrentPPO.load(legacy)
    refused(["evaluate", "--model", run], ["evil", "refused"])
    refused(["record", "--model", run, "--out", tmp_path / "x.gif"], ["evil"])
    refused(["train", "--resume", run, "--timesteps", 64, "--no-progress"], ["evil"])
    assert snapshot(run) == before and not marker.exists()

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


def test_hostile_tensor_files_are_refused(trained_run, tmp_path, refused):
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
        refused(["evaluate", "--model", run], ["cannot load model"])
        refused(["train", "--resume", run, "--timesteps", 64, "--no-progress"], ["cannot load model"])
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
