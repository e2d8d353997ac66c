"""A tune's values for a study (``rims-rl sweep --tuned``): each label's best values from ``tuned.yaml``,
accepted only when the ``trials.csv`` beside it shows an equal tuning budget for every label and those
values are the ones of each label's best trial there."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from agents.experiments.tune.report import read_trials
from agents.experiments.tune.storage import TRIALS_FILE, TUNED_FILE
from rims_rl.errors import UserError


def _same(tuned: object, searched: object) -> bool:
    """A tuned.yaml value against the trials.csv cell of the same trial (CSV cells are text; None is empty)."""
    if tuned is None:
        return searched in ("", None)
    if isinstance(tuned, (int, float)) and not isinstance(tuned, bool):
        try:
            return float(searched) == float(tuned)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return False
    return str(searched) == str(tuned)


@dataclass
class Tuned:
    """A tune's best values per label (dotted key -> value) and the core each label was tuned as."""

    values: dict[str, dict[str, Any]]
    cores: dict[str, str]


def tuned_file(path: str | os.PathLike) -> Path:
    """The ``tuned.yaml`` that ``path`` names: the file itself or a tune's env dir holding it."""
    path = Path(path)
    if path.is_dir():
        if not (path / TUNED_FILE).is_file():
            envs = sorted(p.parent.name for p in path.glob(f"*/{TUNED_FILE}"))
            hint = f"; give one of its env dirs: {', '.join(envs)}" if envs else ""
            raise UserError(f"no {TUNED_FILE} in {path}{hint}")
        return path / TUNED_FILE
    if not path.is_file():
        raise UserError(f"no tuned values at {path}: no such file or directory")
    return path


def read_tuned(path: str | os.PathLike, trials: int | None = None) -> Tuned:
    """Every tuned label's best values from ``path`` (a ``tuned.yaml`` or its env dir).

    UserError unless the ``trials.csv`` beside it gives every label (of it or of tuned.yaml) the same number
    of trials (failed trials count; exactly ``trials`` each when given) and each label's values are exactly
    the searched values of its best trial there (the highest score, the lowest trial number on ties)."""
    file = tuned_file(path)
    try:
        tuned = yaml.safe_load(file.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise UserError(f"cannot read {file}: {getattr(e, 'strerror', None) or e}") from None
    if not isinstance(tuned, dict) or not all(isinstance(v, dict) for v in tuned.values()):
        raise UserError(f"{file} is not a {TUNED_FILE} of rims-rl tune (label: {{key: value}})")
    rows, keys = read_trials(file.parent / TRIALS_FILE)
    labels = list(dict.fromkeys([*(r["label"] for r in rows), *tuned]))
    counts = {label: sum(r["label"] == label for r in rows) for label in labels}
    if trials is not None:
        short = ", ".join(f"{k} {n} of {trials} trials" for k, n in counts.items() if n < trials)
        if short:
            raise UserError(f"the tuning is not finished: {short}")
        over = ", ".join(f"{k} has {n} trials, not {trials}" for k, n in counts.items() if n > trials)
        if over:
            raise UserError(f"unequal tuning budgets: {over}")
    elif len(set(counts.values())) > 1:
        raise UserError(f"unequal tuning budgets in {file.parent / TRIALS_FILE}: "
                        f"{', '.join(f'{k} {n}' for k, n in counts.items())} trials; run the tune again to finish it")
    cores = {}
    for label, values in tuned.items():
        scored = [r for r in rows if r["label"] == label and r["score"] is not None]
        best = max(scored, key=lambda r: (r["score"], -r["trial"])) if scored else None
        searched = {k for k in keys if best is not None and best.get(k) not in ("", None)}
        if (best is None or not searched <= set(values)
                or not all(k in keys and _same(v, best.get(k)) for k, v in values.items())):
            raise UserError(f"{file}: {label}'s values are not those of its best trial in {TRIALS_FILE}; run the "
                            f"tune again to rewrite both")
        cores[label] = best["core"]
    return Tuned(tuned, cores)
