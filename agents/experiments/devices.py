"""The torch device of a run: ``auto`` (CUDA when torch sees a GPU, else the CPU), ``cpu``, ``cuda``, ``cuda:N``;
and the torch CPU threads of a block of work.

A model trained on one device loads on any other (SB3 maps the saved tensors to the device asked for).
Torch is imported only by the functions that ask it something: the command line's parser and the
sweep's driver check device names without it.
"""
from __future__ import annotations

import re
from contextlib import contextmanager
from typing import Iterator

from rims_rl.errors import UserError

DEVICES = ("auto", "cpu", "cuda", "cuda:N")
_CUDA = re.compile(r"cuda(:\d+)?")


def check_device_name(name: object) -> str:
    """``name`` normalized (``"CUDA:0"`` -> ``"cuda:0"``); UserError unless it is one of :data:`DEVICES`.

    Only the spelling is checked: whether the device exists is up to the machine that runs the model
    (:func:`resolve_device`), which for a sweep on a cluster is not the one that checks the grid.
    """
    text = str(name).strip().lower()
    if text in ("auto", "cpu") or _CUDA.fullmatch(text):
        return text
    raise UserError(f"unknown device {name!r}; valid: {', '.join(DEVICES)}")


def cuda_available() -> bool:
    """True if torch sees a usable CUDA GPU on this machine."""
    import torch

    return torch.cuda.is_available()


def resolve_device(name: object) -> str:
    """The torch device for ``name`` on this machine: ``cpu``, ``cuda`` or ``cuda:N``.

    ``auto`` gives ``cuda`` when torch sees a GPU, else ``cpu``. An explicit CUDA device that this
    machine lacks raises UserError (one line naming what torch sees).
    """
    import torch

    text = check_device_name(name)
    if text == "auto":
        return "cuda" if cuda_available() else "cpu"
    if text == "cpu":
        return "cpu"
    if not cuda_available():
        raise UserError(f"device {text!r}: CUDA is not available (torch {torch.__version__} sees no GPU); "
                        f"use --device cpu or auto")
    count = torch.cuda.device_count()
    if ":" in text and int(text.split(":")[1]) >= count:
        raise UserError(f"device {text!r}: torch sees {count} GPU(s): cuda:0 to cuda:{count - 1}")
    return text


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the body with ``n`` torch CPU threads (None = unchanged), then restore the previous count."""
    import torch

    previous = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
