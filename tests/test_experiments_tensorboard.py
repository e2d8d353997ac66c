"""TensorBoard opens on the learning curves: the evaluations' tag groups sort after training's."""
from __future__ import annotations

import re
from functools import cmp_to_key

from agents.experiments.tb_tags import LADDER_IMAGE, OLD_PERIODIC_TAGS, ladder_tag, periodic_tag


def tensorboard_order(a: str, b: str) -> int:
    """TensorBoard 2.21's tag comparison (``compareTagNames`` of its frontend), for tags whose numbers are
    whole: runs of digits compare as numbers, ``/`` and digits come before any other character, other
    characters compare by code."""
    i = j = 0
    while True:
        if i == len(a):
            return 0 if j == len(b) else -1
        if j == len(b):
            return 1
        if a[i].isdigit() and b[j].isdigit():
            x, y = re.match(r"\d+", a[i:]).group(), re.match(r"\d+", b[j:]).group()
            if int(x) != int(y):
                return -1 if int(x) < int(y) else 1
            i, j = i + len(x), j + len(y)
            continue
        first, second = a[i] == "/" or a[i].isdigit(), b[j] == "/" or b[j].isdigit()
        if first != second:
            return -1 if first else 1
        if not first and a[i] != b[j]:
            return -1 if a[i] < b[j] else 1
        i, j = i + 1, j + 1


def groups_in_tensorboard_order(tags: list[str]) -> list[str]:
    """The tag groups (first path components) in the order TensorBoard shows them."""
    return list(dict.fromkeys(t.split("/", 1)[0] for t in sorted(tags, key=cmp_to_key(tensorboard_order))))


def test_the_learning_curves_come_first_then_the_rims_statistics_and_the_evaluations_last():
    from agents.rims_logging import GROUP

    training = [f"{GROUP}/active_frac_0", f"{GROUP}/active_frac_10", f"{GROUP}/switch_rate", f"{GROUP}/activation_raster",
                "rollout/ep_rew_mean", "rollout/ep_len_mean", "time/fps", "train/value_loss", "train/approx_kl"]
    evaluation = [periodic_tag("mean_return"), periodic_tag("success_rate"), ladder_tag("none", 0, "mean_return"),
                  ladder_tag("distractors", 3, "success_rate"), LADDER_IMAGE]
    order = groups_in_tensorboard_order(evaluation + training)
    assert order[:4] == ["rollout", GROUP, "time", "train"]  # TensorBoard expands the first two on a first visit
    assert set(order[4:]) == {t.split("/")[0] for t in evaluation}
    assert groups_in_tensorboard_order(list(OLD_PERIODIC_TAGS) + training)[0] == "eval"  # what the renaming avoids


def test_older_periodic_tags_map_to_todays():
    assert OLD_PERIODIC_TAGS == {"eval/mean_return": periodic_tag("mean_return"),
                                 "eval/std_return": periodic_tag("std_return"),
                                 "eval/success_rate": periodic_tag("success_rate")}
