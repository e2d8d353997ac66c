"""The TensorBoard tags of rims-rl's evaluations: written by training and ``evaluate``, read by the report.

TensorBoard 2.21's dashboards (Time Series, the default, and Scalars) sort the cards by tag, comparing
characters by code (digits and ``/`` before any other character, numbers by value, so upper case
before lower case and ``_`` before ``a``), group them by the tag's first path component in that order,
and expand only the first two groups on a first visit. Training writes SB3's ``rollout/``, ``time/``
and ``train/`` groups and the RIMs core's ``rollout_rims/`` (agents.rims_logging.GROUP, which sorts right after
``rollout/``); the evaluations' groups are named to sort after all
of them, so that the learning curves open first and the final evaluation's single-point cards (one
per setting and metric) come last:

- ``validation/<metric>``: the periodic evaluation during training (it keeps the best model);
- ``under_shift/<shift>/level<L>/<metric>`` and the image ``under_shift/ladder``: the evaluation of
  a model across the shift ladder (``shift`` ``none`` is the unshifted setting).

Run dirs written by earlier versions hold both under ``eval/``; :data:`OLD_PERIODIC_TAGS` maps
their periodic-evaluation tags to today's, for the learning curves.
"""
from __future__ import annotations

PERIODIC_GROUP = "validation"
LADDER_GROUP = "under_shift"
PERIODIC_METRICS = ("mean_return", "std_return", "success_rate")
OLD_PERIODIC_TAGS = {f"eval/{metric}": f"{PERIODIC_GROUP}/{metric}" for metric in PERIODIC_METRICS}
LADDER_IMAGE = f"{LADDER_GROUP}/ladder"


def periodic_tag(metric: str) -> str:
    """The tag of a periodic-evaluation ``metric`` (one of :data:`PERIODIC_METRICS`)."""
    return f"{PERIODIC_GROUP}/{metric}"


def ladder_tag(shift: str, level: int, metric: str) -> str:
    """The tag of ``metric`` at one setting (``shift``, ``level``) of an evaluation across the ladder."""
    return f"{LADDER_GROUP}/{shift}/level{level}/{metric}"
