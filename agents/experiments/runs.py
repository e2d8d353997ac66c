"""Run dirs: layout, creation (never over an existing one), atomic checkpoints, model lookup.

Layout of one run (``<logdir>/<env>/<core>/seed<N>/``; ``/`` in an env id becomes ``-``)::

    config.yaml            the fully resolved config of the run
    checkpoints/last.zip   the latest periodic checkpoint (weights, optimizer state, step count)
    model.zip              the final model (written when training finishes)
    best_model.zip         the best model of the periodic evaluation (eval.freq > 0)
    tb/train_1/            TensorBoard events of training (resumed runs append to the same dir)
    tb/eval/               TensorBoard events of `evaluate`
    eval/                  results.csv, results.json, returns.png of `evaluate`

Every model file is written atomically: to a temp file in the same dir, fsync, ``os.replace``.
A crash at any moment leaves either the previous file or the new one, never a half-written one.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from agents.experiments.config import UserError, read_config_file
from agents.experiments.files import atomic_open

CONFIG_FILE = "config.yaml"
CHECKPOINT = Path("checkpoints") / "last.zip"
FINAL_MODEL = "model.zip"
BEST_MODEL = "best_model.zip"
TB_DIR = "tb"
TRAIN_TB_NAME = "train"
EVAL_DIR = "eval"


def env_dirname(env_id: str) -> str:
    """A directory name for ``env_id`` ("ALE/Breakout-v5" -> "ALE-Breakout-v5")."""
    return env_id.replace("/", "-").replace(os.sep, "-")


def run_dir_for(logdir: str | os.PathLike, env_id: str, core: str, seed: int) -> Path:
    """``<logdir>/<env>/<core>/seed<seed>``."""
    return Path(logdir) / env_dirname(env_id) / core / f"seed{seed}"


def is_run_dir(path: str | os.PathLike) -> bool:
    """True if ``path`` is a dir holding a run's ``config.yaml``."""
    return (Path(path) / CONFIG_FILE).is_file()


def refuse_existing(run_dir: Path) -> None:
    """Raise UserError if ``run_dir`` exists (a run is never overwritten silently)."""
    if run_dir.exists():
        raise UserError(
            f"run dir {run_dir} already exists; continue it with --resume {run_dir}, "
            f"or choose another --logdir or --seed"
        )


def find_run_dirs(paths: list[str | os.PathLike]) -> list[Path]:
    """Run dirs named by ``paths``: each path is a run dir or a dir searched recursively for them."""
    found: list[Path] = []
    for p in paths:
        path = Path(p)
        if not path.is_dir():
            raise UserError(f"{path} is not a directory")
        if is_run_dir(path):
            found.append(path)
            continue
        below = sorted(c.parent for c in path.rglob(CONFIG_FILE))
        if not below:
            raise UserError(f"no run dirs (dirs with {CONFIG_FILE}) in {path}")
        found.extend(below)
    unique: list[Path] = []
    for run in found:
        if run.resolve() not in {u.resolve() for u in unique}:
            unique.append(run)
    return unique


def read_run_config(run_dir: str | os.PathLike) -> dict:
    """The resolved config of a run dir (UserError if it is missing)."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise UserError(f"{run_dir} is not a run dir: {CONFIG_FILE} is missing")
    return read_config_file(path)


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
    from agents.serialization import read_data

    try:
        return read_data(path)
    except OSError as e:
        raise UserError(f"cannot read model {path}: {e.strerror or type(e).__name__}") from None
    except ValueError as e:
        raise UserError(f"model {path} is corrupt or not a rims-rl model: {e}") from None


def load_model(model_file: str | os.PathLike, env=None, env_id: str | None = None, device: str = "cpu"):
    """Load a RecurrentPPO model (weights, optimizer state, step count); UserError if unreadable or unsafe.

    Nothing in the file is unpickled (:mod:`agents.serialization`). A file in SB3's own format (an
    older rims-rl) has its spaces only as pickles: they are taken from ``env``, else from a fresh
    ``env_id`` env.
    """
    from agents import RecurrentPPO
    from agents.serialization import is_legacy

    path = Path(model_file)
    if not path.is_file():
        raise UserError(f"model {path} does not exist")
    custom_objects = None
    if env is None and env_id is not None and is_legacy(_read_zip_data(path)):
        from envs import make_vec_env

        probe = make_vec_env(env_id, n_envs=1, seed=0, training=False)
        custom_objects = {"observation_space": probe.observation_space, "action_space": probe.action_space}
        probe.close()
    try:
        return RecurrentPPO.load(str(path), env=env, device=device, custom_objects=custom_objects)
    except OSError as e:
        raise UserError(f"cannot read model {path}: {e.strerror or type(e).__name__}") from None
    except Exception as e:  # a bad file raises many types (torch's UnpicklingError included); all mean "cannot use it"
        detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"cannot load model {path}: {detail[:300]}") from None


def atomic_save(model, path: str | os.PathLike) -> Path:
    """Save ``model`` (SB3 ``save``) to ``path`` atomically (:func:`agents.experiments.files.atomic_open`)."""
    with atomic_open(path, "wb") as f:
        model.save(f)
    return Path(path)
