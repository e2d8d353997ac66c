"""Run dirs: layout, creation (never over an existing one), atomic checkpoints, model lookup.

Layout of one run (``<logdir>/<env>/<label>/seed<N>/``, the label being the core unless a run names a variant; ``/`` and ``:`` in an env id become ``-``)::

    config.yaml            the fully resolved config of the run
    checkpoints/last.zip   the latest periodic checkpoint (weights, optimizer state, step count)
    model.zip              the final model (written when training finishes)
    best_model.zip         the best model of the periodic evaluation (eval.freq > 0)
    best_model.json        its score and step, so that a resumed run keeps the best model of all sessions
    tb/train_1/            TensorBoard events of training (resumed runs append to the same dir)
    tb/eval/               TensorBoard events of `evaluate`
    eval/                  results.csv, results.json, returns.png of `evaluate`
    train.log              the output of a `sweep` run (its progress lines, resume notes, errors)
    progress.json          a sweep run's step count, for the driver's live line (a display file only)

Beside the run dir, ``.seed<N>.lock`` is its writer lock (:func:`run_dir_lock`): one process at a
time trains or resumes a run dir.

Every model file is written atomically: to a temp file in the same dir, fsync, ``os.replace``.
A crash at any moment leaves either the previous file or the new one, never a half-written one.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from filelock import FileLock, Timeout

from agents.experiments.config import flatten, read_config_file
from agents.experiments.files import atomic_open
from envs import make_vec_env
from rims_rl.errors import UserError, first_line

CONFIG_FILE = "config.yaml"
CHECKPOINT = Path("checkpoints") / "last.zip"
FINAL_MODEL = "model.zip"
BEST_MODEL = "best_model.zip"
BEST_SCORE = "best_model.json"
TB_DIR = "tb"
TRAIN_TB_NAME = "train"
EVAL_DIR = "eval"
TRAIN_LOG = "train.log"
RUNTIME_KEYS = ("device",)  # config keys a run may change between sessions (a resume on another machine)
DERIVED_KEYS = ("core_parameters",)  # written by training from the config itself, never a difference


def env_dirname(env_id: str) -> str:
    """A directory name for ``env_id`` ("ALE/Breakout-v5" -> "ALE-Breakout-v5", "my_envs:Maze-v0" ->
    "my_envs-Maze-v0")."""
    return env_id.replace("/", "-").replace(os.sep, "-").replace(":", "-")


def run_dir_for(logdir: str | os.PathLike, env_id: str, label: str, seed: int) -> Path:
    """``<logdir>/<env>/<label>/seed<seed>`` (the label is the core's name unless a run names a variant)."""
    return Path(logdir) / env_dirname(env_id) / label / f"seed{seed}"


def config_differences(a: dict, b: dict, ignore: tuple[str, ...] = ()) -> list[str]:
    """The dotted keys whose values differ between configs ``a`` and ``b``, each as ``key: A vs B``
    (the runtime and derived keys and ``ignore`` left out)."""
    skip = (*RUNTIME_KEYS, *DERIVED_KEYS, *ignore)
    flat_a, flat_b = ({k: v for k, v in flatten(c) if k.split(".")[0] not in skip} for c in (a, b))
    return [f"{k}: {flat_a.get(k, '(absent)')} vs {flat_b.get(k, '(absent)')}"
            for k in sorted(set(flat_a) | set(flat_b)) if flat_a.get(k, object) != flat_b.get(k, object)]


def is_run_dir(path: str | os.PathLike) -> bool:
    """True if ``path`` is a dir holding a run's ``config.yaml``."""
    return (Path(path) / CONFIG_FILE).is_file()


def refuse_existing(run_dir: Path) -> None:
    """Raise UserError if ``run_dir`` exists (a run is never overwritten silently).

    A run dir that another process is training is reported with that process's PID.
    """
    holder = lock_holder(run_dir)
    if holder is not None:
        raise UserError(_in_use_message(run_dir, holder))
    if run_dir.exists():
        raise UserError(
            f"run dir {run_dir} already exists; continue it with --resume {run_dir}, "
            f"or choose another --logdir or --seed"
        )


def run_state(run_dir: Path, cfg: dict) -> str:
    """``new``, ``done`` (model.zip written) or ``resume`` for ``run_dir`` meant to hold a run of ``cfg``.

    Raises UserError if ``run_dir`` exists but is not a run dir, or holds a run of another config
    (naming the keys that differ): a re-run never mixes two configs in one run dir. The keys of
    :data:`RUNTIME_KEYS` (where a run trains, not what it computes) may differ.
    """
    if not run_dir.exists():
        return "new"
    if not is_run_dir(run_dir):
        if run_dir.is_dir() and set(os.listdir(run_dir)) <= {TRAIN_LOG}:
            return "new"  # a sweep run stopped before it wrote its config: only its log is there
        raise UserError(f"{run_dir} exists but is not a run dir; choose another --logdir")
    differ = config_differences(read_run_config(run_dir), cfg)
    if differ:
        raise UserError(f"{run_dir} holds a run with a different config (differs in {'; '.join(differ)}); "
                        f"choose another --logdir or --label")
    if (run_dir / FINAL_MODEL).is_file():
        return "done"
    return "resume"


# ---------------------------------------------------------------- one writer per run dir

def lock_path(run_dir: str | os.PathLike) -> Path:
    """The writer lock of ``run_dir``: ``.<name>.lock`` beside it (so a fresh run can lock before it exists)."""
    run_dir = Path(run_dir)
    return run_dir.parent / f".{run_dir.name}.lock"


def write_pid(fd: int) -> None:
    """Write this process's PID into the lock file ``fd`` (a lock's ``on_acquired``)."""
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)


def read_pid(path: Path) -> int | None:
    """The PID a lock file holds, None if unreadable."""
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _in_use_message(run_dir: Path, pid: int | None) -> str:
    known = pid is not None and pid > 0
    who = f"process {pid}" if known else "another process"
    return (f"run dir {run_dir} is in use: {who} is training it; wait for it to end or stop it "
            f"(kill {pid if known else 'PID'})")


@contextmanager
def run_dir_lock(run_dir: str | os.PathLike) -> Iterator[None]:
    """Hold the exclusive writer lock of ``run_dir`` for the body (an OS lock: released on process death).

    A second writer gets UserError naming the holder's PID (``train``, ``train --resume``,
    ``demo`` and ``sweep`` all train through it). The lock file holds the holder's PID. The holder
    may take it again (nested, e.g. a sweep task around ``train_run``).
    """
    path = lock_path(run_dir)
    created = [d for d in (path.parent, *path.parent.parents) if not d.exists()]
    lock_existed = path.exists()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(path, timeout=0, on_acquired=write_pid, is_singleton=True)  # re-entrant in a process
        lock.acquire()
    except Timeout:
        raise UserError(_in_use_message(Path(run_dir), read_pid(path))) from None
    except OSError as e:  # e.g. a full disk: the PID could not be written
        if not lock_existed:
            _unlink_quietly(path)
        _remove_empty_dirs(created)
        raise UserError(f"cannot lock run dir {run_dir} ({path}): {e.strerror or e}") from None
    try:
        yield
    finally:
        lock.release()
        if not lock.is_locked and not Path(run_dir).exists():  # no run was set up (a full disk...): leave nothing
            _unlink_quietly(path)
            _remove_empty_dirs(created)


def _unlink_quietly(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass


def _remove_empty_dirs(dirs: list[Path]) -> None:
    """Remove each of ``dirs`` (deepest first) that exists and is empty."""
    for directory in dirs:
        try:
            directory.rmdir()
        except OSError:
            pass


def lock_holder(run_dir: str | os.PathLike) -> int | None:
    """The PID of another process holding ``run_dir``'s writer lock (-1 if unknown), or None if it is free
    (or held by this process)."""
    path = lock_path(run_dir)
    if not path.is_file():
        return None
    lock = FileLock(path, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        pid = read_pid(path)
        if pid == os.getpid():
            return None
        return -1 if pid is None else pid
    except OSError:
        return None
    lock.release()
    return None


def find_run_dirs(paths: list[str | os.PathLike]) -> list[Path]:
    """Run dirs named by ``paths``: each path is a run dir or a dir searched recursively for them (hidden
    dirs below it aside)."""
    found: list[Path] = []
    for p in paths:
        path = Path(p)
        if not path.is_dir():
            raise UserError(f"{path} is not a directory")
        if is_run_dir(path):
            found.append(path)
            continue
        below = sorted(c.parent for c in path.rglob(CONFIG_FILE)  # not in hidden dirs: a copy being staged
                       if not any(part.startswith(".") for part in c.relative_to(path).parts))
        if not below:
            raise UserError(f"no run dirs (dirs with {CONFIG_FILE}) in {path}")
        found.extend(below)
    unique: dict[Path, Path] = {}
    for run in found:
        unique.setdefault(run.resolve(), run)
    return list(unique.values())


def read_run_config(run_dir: str | os.PathLike) -> dict:
    """The resolved config of a run dir (UserError if it is missing)."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise UserError(f"{run_dir} is not a run dir: {CONFIG_FILE} is missing")
    cfg = read_config_file(path)
    if cfg.get("label") is None:  # run dirs written before labels and matching existed
        cfg["label"] = cfg["core"]
    cfg.setdefault("match", "none")
    return cfg


def resolve_model_path(path: str | os.PathLike) -> tuple[Path, Path | None]:
    """``--model`` -> (model file, run dir or None).

    A run dir gives its ``model.zip``, else ``checkpoints/last.zip``; a file gives itself, and its
    run dir if the file lies in one (``<run>/model.zip`` or ``<run>/checkpoints/last.zip``).
    """
    p = Path(path)
    if p.is_dir():
        if not is_run_dir(p):
            raise UserError(f"{p} is neither a model file nor a run dir ({CONFIG_FILE} is missing)")
        for candidate in (p / FINAL_MODEL, p / CHECKPOINT):
            if candidate.is_file():
                return candidate, p
        raise UserError(f"run dir {p} has no model: neither {FINAL_MODEL} nor {CHECKPOINT} exists")
    if not p.is_file():
        raise UserError(f"model {p} does not exist")
    for parent in (p.parent, p.parent.parent):
        if is_run_dir(parent):
            return p, parent
    return p, None


def read_num_timesteps(model_file: str | os.PathLike) -> int:
    """The step count stored in a model zip, without building the model (nothing is unpickled)."""
    steps = _read_zip_data(Path(model_file)).get("num_timesteps")
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 0:
        raise UserError(f"model {model_file} is corrupt or not a rims-rl model (num_timesteps is {steps!r})")
    return steps


def _read_zip_data(path: Path) -> dict[str, Any]:
    """The JSON ``data`` of a model zip (:func:`agents.serialization.read_data`); UserError if unreadable."""
    from agents.model_zip import ModelTooLargeError
    from agents.serialization import read_data

    try:
        return read_data(path)
    except OSError as e:
        raise UserError(f"cannot read model {path}: {e.strerror or type(e).__name__}") from None
    except ModelTooLargeError as e:
        raise UserError(f"cannot load model {path}: {e}") from None
    except ValueError as e:
        raise UserError(f"model {path} is corrupt or not a rims-rl model: {e}") from None


def _env_spaces(env_id: str, data: dict[str, Any]) -> tuple:
    """The observation and action spaces of ``env_id`` as evaluate and record build it for a model of ``data``."""
    from envs import resolve_env

    declared = data.get("observation_space")  # a model that reads the mission declares a Dict; legacy ones do not
    with_mission = (isinstance(declared, dict) and declared.get("type") == "Dict"
                    and resolve_env(env_id).kind == "minigrid")  # other dict envs give their dict as it is
    probe = make_vec_env(env_id, n_envs=1, seed=0, training=False, instructions=with_mission)
    try:
        return probe.observation_space, probe.action_space
    finally:
        probe.close()


def load_model(model_file: str | os.PathLike, env=None, env_id: str | None = None, device: str = "cpu"):
    """Load a RecurrentPPO model (weights, optimizer state, step count) onto the torch ``device``;
    UserError if unreadable or unsafe. A model saved on any device loads on any other.

    Nothing in the file is unpickled and memory is bounded (:mod:`agents.serialization`). The
    model's spaces are checked against those of ``env``, else of a fresh ``env_id`` env, before
    anything is built from them; a file in SB3's own format (an older rims-rl) has its spaces only
    as pickles: they are taken from that env.
    """
    from agents import RecurrentPPO
    from agents.model_zip import CorruptModelError
    from agents.serialization import is_legacy, policy_view

    path = Path(model_file)
    if not path.is_file():
        raise UserError(f"model {path} does not exist")
    custom_objects = expected = None
    if env is None and env_id is not None:
        data = _read_zip_data(path)  # a damaged file is reported before an env is built
        expected = _env_spaces(env_id, data)
        if is_legacy(data):  # SB3 saved the spaces its policy saw: images channel-first
            custom_objects = {"observation_space": policy_view(expected[0]), "action_space": expected[1]}
    try:
        return RecurrentPPO.load(str(path), env=env, device=device, custom_objects=custom_objects,
                                 expected_spaces=expected)
    except OSError as e:
        raise UserError(f"cannot read model {path}: {e.strerror or type(e).__name__}") from None
    except CorruptModelError as e:
        raise UserError(f"cannot load model {path}: it is corrupt or not a rims-rl model ({e})") from None
    except Exception as e:  # a bad file raises many types (torch's UnpicklingError included); all mean "cannot use it"
        raise UserError(f"cannot load model {path}: {first_line(e)[:300]}") from None


def atomic_save(model, path: str | os.PathLike) -> Path:
    """Save ``model`` (SB3 ``save``) to ``path`` atomically (:func:`agents.experiments.files.atomic_open`)."""
    with atomic_open(path, "wb") as f:
        model.save(f)
    return Path(path)
