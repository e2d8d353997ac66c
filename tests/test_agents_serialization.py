"""agents.serialization: spaces and schedules round-trip through plain JSON."""
from __future__ import annotations

import json

import pytest


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
