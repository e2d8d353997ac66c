"""A model file from anyone is loaded in bounded memory, and a hostile zip is one line, exit 2.

Declared shapes are checked before anything is built from them, member sizes before anything is
decompressed; encrypted, oddly compressed, damaged and truncated zips are refused with one line
from the Python API and the CLI alike.
"""
from __future__ import annotations

import json
import os
import pickle
import struct
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from agents import RecurrentPPO
from rims_rl.errors import UserError
from agents.experiments.runs import load_model, read_num_timesteps
from agents.model_zip import MAX_MODEL_MB_VAR, CorruptModelError, ModelTooLargeError
from agents.serialization import MAX_SPACE_ELEMENTS, UnsafeModelError, read_data

ENV = "RedBallDistractors-v0"


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    """A tiny untrained lstm model of ENV (observation Box[3, 7, 7] once channel-first, Discrete(3))."""
    from envs import make_vec_env

    env = make_vec_env(ENV, n_envs=2, seed=0, training=False)
    try:
        model = RecurrentPPO("MlpPolicy", env, core="lstm", core_kwargs={"hidden_size": 12}, n_steps=8,
                             n_minibatches=1, policy_kwargs={"features_dim": 16})
        path = tmp_path_factory.mktemp("limits") / "model.zip"
        model.save(path)
    finally:
        env.close()
    return path


def _members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _write(path: Path, members: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> Path:
    with zipfile.ZipFile(path, "w", compression=compression) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return path


def _with_data(src: Path, dst: Path, change) -> Path:
    members = _members(src)
    data = json.loads(members["data"])
    change(data)
    members["data"] = json.dumps(data).encode()
    return _write(dst, members)


def _patch_entry(path: Path, name: str, **fields: int) -> None:
    """Overwrite fields of ``name``'s central directory entry and local header (the bytes a hostile file sets)."""
    # field: (offset in the central entry, offset in the local header, struct format)
    layout = {"flags": (8, 6, "<H"), "method": (10, 8, "<H"), "crc": (16, 14, "<I"), "file_size": (24, 22, "<I")}
    raw = bytearray(path.read_bytes())
    encoded = name.encode()
    central = 0
    while True:
        central = raw.find(b"PK\x01\x02", central)
        assert central >= 0, name
        length = struct.unpack_from("<H", raw, central + 28)[0]
        if raw[central + 46:central + 46 + length] == encoded:
            break
        central += 4
    local = struct.unpack_from("<I", raw, central + 42)[0]
    assert raw[local:local + 4] == b"PK\x03\x04"
    for field, value in fields.items():
        in_central, in_local, fmt = layout[field]
        struct.pack_into(fmt, raw, central + in_central, value)
        struct.pack_into(fmt, raw, local + in_local, value)
    path.write_bytes(bytes(raw))


def _copy(src: Path, dst: Path) -> Path:
    dst.write_bytes(src.read_bytes())
    return dst


def _refused_everywhere(path: Path, error: type, words: list[str]) -> None:
    """RecurrentPPO.load raises ``error``; runs.load_model and read_num_timesteps give one line naming ``path``."""
    with pytest.raises(error) as raised:
        RecurrentPPO.load(path)
    assert "\n" not in str(raised.value) and all(w in str(raised.value) for w in words), raised.value
    for call in (lambda: load_model(path, env_id=ENV), lambda: read_num_timesteps(path)):
        with pytest.raises(UserError) as user_error:
            call()
        message = str(user_error.value)
        assert "\n" not in message and str(path) in message and all(w in message for w in words), message


# ------------------------------------------------------------------ damaged and hostile zips

@pytest.mark.parametrize("member", ["data", "policy.pth"])
def test_an_encrypted_member_is_one_line(model_file, tmp_path, member):
    bad = _copy(model_file, tmp_path / "bad.zip")
    _patch_entry(bad, member, flags=0x1)
    _refused_everywhere(bad, CorruptModelError, [member, "encrypted"])


@pytest.mark.parametrize("member", ["data", "policy.optimizer.pth"])
def test_an_unknown_compression_method_is_one_line(model_file, tmp_path, member):
    bad = _copy(model_file, tmp_path / "bad.zip")
    _patch_entry(bad, member, method=98)
    _refused_everywhere(bad, CorruptModelError, [member, "compression method 98"])


def test_bzip2_and_lzma_members_are_not_read(model_file, tmp_path):
    """Their decompressors expand one chunk without bound: only stored and deflated members are read."""
    for method, name in ((zipfile.ZIP_BZIP2, "bzip2"), (zipfile.ZIP_LZMA, "lzma")):
        bad = _write(tmp_path / f"{name}.zip", _members(model_file), compression=method)
        _refused_everywhere(bad, CorruptModelError, [f"({name})"])
    deflated = _write(tmp_path / "deflated.zip", _members(model_file), compression=zipfile.ZIP_DEFLATED)
    assert RecurrentPPO.load(deflated).num_timesteps == 0


def test_a_bad_crc_is_one_line(model_file, tmp_path):
    bad = _copy(model_file, tmp_path / "bad.zip")
    _patch_entry(bad, "data", crc=0x12345678)
    _refused_everywhere(bad, CorruptModelError, ["'data'", "CRC"])

    # in a weights member the damage shows only while it is read: still one line naming the model
    weights = _copy(model_file, tmp_path / "weights.zip")
    _patch_entry(weights, "policy.pth", crc=0x12345678)
    with pytest.raises(CorruptModelError, match="'policy.pth' fails its CRC check"):
        RecurrentPPO.load(weights)
    with pytest.raises(UserError, match=f"cannot load model {weights}: it is corrupt or not a rims-rl model"):
        load_model(weights, env_id=ENV)


@pytest.mark.parametrize("cut", ["empty", "half", "no_directory"])
def test_truncated_and_empty_zips_are_one_line(model_file, tmp_path, cut):
    """Cut files are refused; one cut exposes the directory of the zip inside policy.pth, which lacks 'data'."""
    raw = model_file.read_bytes()
    content = {"empty": b"", "half": raw[: len(raw) // 2], "no_directory": raw[: raw.rfind(b"PK\x01\x02") - 10]}[cut]
    bad = tmp_path / "bad.zip"
    bad.write_bytes(content)
    _refused_everywhere(bad, CorruptModelError, ["not a zip file"] if cut == "empty" else [])


def test_a_missing_member_is_one_line(model_file, tmp_path):
    members = _members(model_file)
    del members["policy.optimizer.pth"]
    bad = _write(tmp_path / "bad.zip", members)
    with pytest.raises(CorruptModelError, match="'policy.optimizer.pth' is missing"):
        RecurrentPPO.load(bad)
    with pytest.raises(UserError, match=f"cannot load model {bad}: .*'policy.optimizer.pth' is missing"):
        load_model(bad, env_id=ENV)
    del members["data"]
    _refused_everywhere(_write(bad, members), CorruptModelError, ["'data' is missing"])


def test_garbage_weights_never_quote_the_unsafe_advice(model_file, tmp_path):
    """torch's error advises weights_only=False (the unsafe load): the message gives the reason only."""
    class Payload:
        def __reduce__(self):
            return os.system, ("true",)

    for name, content in (("pickle", pickle.dumps(Payload())), ("garbage", b"not a tensor file at all" * 10),
                          ("empty", b"")):
        members = _members(model_file)
        members["policy.pth"] = content
        bad = _write(tmp_path / f"{name}.zip", members)
        with pytest.raises(ValueError) as raised:
            RecurrentPPO.load(bad)
        with pytest.raises(UserError) as user_error:
            load_model(bad, env_id=ENV)
        for message in (str(raised.value), str(user_error.value)):
            assert "policy.pth" in message and "\n" not in message, message
            assert "weights_only" not in message and "trust" not in message, message
        assert str(bad) in str(user_error.value)


# ------------------------------------------------------------------ sizes

def test_a_member_above_the_limit_is_refused_from_the_directory(model_file, tmp_path, monkeypatch):
    """5 MB of zeros (5 KB compressed) under a 1 MB limit: refused before it is decompressed."""
    members = _members(model_file)
    members["policy.pth"] = bytes(5 * 2**20)
    bomb = _write(tmp_path / "bomb.zip", members, compression=zipfile.ZIP_DEFLATED)
    assert bomb.stat().st_size < 100_000
    opened = []
    real_open = zipfile.ZipFile.open

    def recording_open(self, name, *args, **kwargs):
        opened.append(getattr(name, "filename", name))
        return real_open(self, name, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "open", recording_open)
    monkeypatch.setenv(MAX_MODEL_MB_VAR, "1")
    _refused_everywhere(bomb, ModelTooLargeError, ["'policy.pth'", "5 MB", "1 MB", MAX_MODEL_MB_VAR])
    assert "policy.pth" not in opened  # refused from the directory entry, never decompressed
    monkeypatch.setenv(MAX_MODEL_MB_VAR, "6")
    with pytest.raises(ValueError, match="policy.pth"):  # within the limit: read, then refused as no tensor file
        RecurrentPPO.load(bomb)


def test_the_default_limit_refuses_a_gigabyte_member(model_file, tmp_path):
    """A directory declaring a 1 GiB member (the file itself is small) is refused under the default limit."""
    members = _members(model_file)
    members["policy.optimizer.pth"] = bytes(1000)
    bad = _write(tmp_path / "bad.zip", members)
    _patch_entry(bad, "policy.optimizer.pth", file_size=2**30)
    _refused_everywhere(bad, ModelTooLargeError, ["'policy.optimizer.pth'", "1,024 MB", "256 MB"])


def test_a_directory_that_understates_a_member_stops_decompression(model_file, tmp_path, monkeypatch):
    """A 5 MB member whose directory says 1,000 bytes: reading stops there (then the CRC fails)."""
    members = _members(model_file)
    members["policy.pth"] = bytes(5 * 2**20)
    bomb = _write(tmp_path / "bomb.zip", members, compression=zipfile.ZIP_DEFLATED)
    _patch_entry(bomb, "policy.pth", file_size=1000)
    decompressed = []
    real_update_crc = zipfile.ZipExtFile._update_crc  # sees every decompressed chunk

    def counting_update_crc(self, data):
        if self.name == "policy.pth":
            decompressed.append(len(data))
        return real_update_crc(self, data)

    monkeypatch.setattr(zipfile.ZipExtFile, "_update_crc", counting_update_crc)
    with pytest.raises(CorruptModelError, match="'policy.pth' fails its CRC check"):
        RecurrentPPO.load(bomb)
    assert 0 < sum(decompressed) <= 1000


def test_a_bad_limit_setting_is_one_line(model_file, monkeypatch):
    monkeypatch.setenv(MAX_MODEL_MB_VAR, "lots")
    with pytest.raises(UserError, match=f"{MAX_MODEL_MB_VAR}='lots' is invalid"):
        read_num_timesteps(model_file)
    monkeypatch.setenv(MAX_MODEL_MB_VAR, "0.5")
    assert read_num_timesteps(model_file) == 0  # a small model fits in half a MB


# ------------------------------------------------------------------ declared shapes

def _huge_observation(data: dict) -> None:
    data["observation_space"]["shape"] = [3, 14000, 14000]


def test_a_huge_declared_observation_is_refused_before_it_is_built(model_file, tmp_path):
    bad = _with_data(model_file, tmp_path / "bad.zip", _huge_observation)
    assert bad.stat().st_size < 200_000
    start = time.monotonic()
    with pytest.raises(UnsafeModelError) as no_env:  # no env: the element limit
        RecurrentPPO.load(bad)
    assert "observation_space Box[3, 14000, 14000]" in str(no_env.value)
    assert str(MAX_SPACE_ELEMENTS) in str(no_env.value)

    from envs import make_vec_env

    env = make_vec_env(ENV, n_envs=2, seed=0, training=False)
    try:
        with pytest.raises(UnsafeModelError, match=r"observation_space in the file is Box\[3, 14000, 14000\]; "
                                                   r"the env's is Box\[3, 7, 7\]"):
            RecurrentPPO.load(bad, env=env)
    finally:
        env.close()
    with pytest.raises(UserError, match=rf"cannot load model {bad}: .*Box\[3, 14000, 14000\].*Box\[3, 7, 7\]"):
        load_model(bad, env_id=ENV)
    assert time.monotonic() - start < 10  # building it took minutes and 8.8 GB


def test_a_huge_declared_observation_stays_in_low_memory(model_file, tmp_path, repo):
    """In a fresh process, refusing it keeps the peak RSS near that of importing torch."""
    bad = _with_data(model_file, tmp_path / "bad.zip", _huge_observation)
    code = ("import resource, sys\n"
            "from agents import RecurrentPPO\n"
            "try:\n"
            f"    RecurrentPPO.load({str(bad)!r})\n"
            "except ValueError as e:\n"
            "    print('refused', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.stdout.startswith("refused"), result.stdout + result.stderr
    assert int(result.stdout.split()[1]) < 1_000_000  # KB: under 1 GB


@pytest.mark.parametrize("field, value, words", [
    ("action_space", {"type": "Discrete", "n": 10**9, "start": 0},
     ["Action spaces do not match", "action_space in the file is Discrete(1000000000)", "Discrete(3)"]),
    ("observation_space", {"type": "Dict", "spaces": [["image", {"type": "Box", "shape": [3, 7, 7], "dtype": "uint8",
                                                                 "low": 0, "high": 255}]]},
     ["observation_space in the file is Dict(image: Box[3, 7, 7])", "Box[3, 7, 7]"]),
])
def test_a_declared_space_unlike_the_envs_names_the_field_and_both_shapes(model_file, tmp_path, field, value, words):
    bad = _with_data(model_file, tmp_path / "bad.zip", lambda d: d.update({field: value}))
    with pytest.raises(UserError) as raised:
        load_model(bad, env_id=ENV)
    message = str(raised.value)
    assert "\n" not in message and all(w in message for w in words), message


def test_absurd_space_descriptions_are_refused_without_building_them(model_file, tmp_path):
    cases = {
        "deep shape": {"type": "Box", "shape": [10**9] * 1000, "dtype": "float32", "low": 0, "high": 1},
        "negative": {"type": "Box", "shape": [3, -7, 7], "dtype": "uint8", "low": 0, "high": 255},
        "many spaces": {"type": "Tuple", "spaces": [{"type": "Discrete", "n": 2, "start": 0}] * 1000},
        "huge nvec": {"type": "MultiDiscrete", "nvec": [10**12], "start": [0], "dtype": "int64"},
    }
    for name, desc in cases.items():
        bad = _with_data(model_file, tmp_path / "bad.zip", lambda d: d.update(observation_space=desc))
        start = time.monotonic()
        with pytest.raises(UnsafeModelError):
            RecurrentPPO.load(bad)
        assert time.monotonic() - start < 5, name


# ------------------------------------------------------------------ weights against the declared model

def test_weights_must_fit_the_model_the_file_describes(model_file, tmp_path):
    """A core 10,000 wide would need 1.6 GB; the file's tensors are 12 wide: refused before allocating."""
    wide = _with_data(model_file, tmp_path / "wide.zip", lambda d: d.update(core_kwargs={"hidden_size": 10_000}))
    start = time.monotonic()
    with pytest.raises(CorruptModelError, match=r"policy.pth: tensor '.*' has shape \[\d+(, \d+)*\]; the model its "
                                                r"data describes has \[40000"):
        RecurrentPPO.load(wide)
    assert time.monotonic() - start < 5
    with pytest.raises(UserError, match=f"cannot load model {wide}: it is corrupt or not a rims-rl model"):
        load_model(wide, env_id=ENV)

    members = _members(model_file)
    import io

    import torch

    state = torch.load(io.BytesIO(members["policy.pth"]), weights_only=True)
    extra = {**state, "evil": torch.zeros(3)}
    buffer = io.BytesIO()
    torch.save(extra, buffer)
    members["policy.pth"] = buffer.getvalue()
    bad = _write(tmp_path / "extra.zip", members)
    with pytest.raises(CorruptModelError, match="policy.pth has unexpected tensor.*evil"):
        RecurrentPPO.load(bad)


def test_a_huge_declared_env_count_is_refused(model_file, tmp_path):
    """n_envs sizes the core state (and the rollout buffer): refused before they are allocated."""
    bad = _with_data(model_file, tmp_path / "bad.zip", lambda d: d.update(n_envs=10**9))
    with pytest.raises(ModelTooLargeError, match="n_envs=1000000000"):
        RecurrentPPO.load(bad)


def test_a_valid_model_still_loads_with_and_without_an_env(model_file):
    from envs import make_vec_env

    assert read_data(model_file)["num_timesteps"] == 0
    env = make_vec_env(ENV, n_envs=3, seed=0, training=False)
    try:
        assert RecurrentPPO.load(model_file, env=env).n_envs == 3
    finally:
        env.close()
    assert load_model(model_file, env_id=ENV).observation_space.shape == (3, 7, 7)


# ------------------------------------------------------------------ through the CLI

def test_the_cli_gives_one_line_and_exit_2(model_file, tmp_path, capsys, run_main, run_script):
    huge = _with_data(model_file, tmp_path / "huge.zip", _huge_observation)
    result = run_script(["evaluate", "--model", huge, "--env", ENV, "--episodes", 1, "--out", tmp_path / "ev"])
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert f"cannot load model {huge}" in lines[0] and "Box[3, 14000, 14000]" in lines[0], lines[0]

    encrypted = _copy(model_file, tmp_path / "encrypted.zip")
    _patch_entry(encrypted, "policy.pth", flags=0x1)
    for command in (["evaluate", "--episodes", 1, "--out", tmp_path / "ev"], ["record", "--out", tmp_path / "ep.gif"]):
        assert run_main([*command, "--model", encrypted, "--env", ENV]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and f"model {encrypted} is corrupt or not a rims-rl model" in lines[0], lines
        assert "'policy.pth' is encrypted" in lines[0]
    assert not (tmp_path / "ev").exists() and not (tmp_path / "ep.gif").exists()


def test_train_resume_refuses_a_hostile_checkpoint_in_one_line(tmp_path, capsys, run_main, train_tiny_run):
    from agents.experiments.runs import CHECKPOINT

    run = train_tiny_run(tmp_path)
    checkpoint = run / CHECKPOINT
    snapshot = {p: p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}
    method = tmp_path / "method.zip"
    _copy(checkpoint, method)
    _patch_entry(method, "policy.pth", method=98)
    huge = _with_data(checkpoint, tmp_path / "huge.zip", _huge_observation)
    for bad, words in ((method, ["is corrupt or not a rims-rl model", "compression method 98"]),
                       (huge, ["cannot load model", "Box[3, 14000, 14000]", "Box[3, 7, 7]"])):
        checkpoint.write_bytes(bad.read_bytes())
        snapshot[checkpoint] = checkpoint.read_bytes()
        assert run_main(["train", "--resume", run, "--timesteps", 64, "--no-progress"]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and str(checkpoint) in lines[0] and all(w in lines[0] for w in words), lines
        assert {p: p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()} == snapshot
