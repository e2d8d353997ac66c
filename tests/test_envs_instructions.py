"""Missions as token ids, dict observations where the mission varies, and the built-in pickup task."""
import numpy as np
import pytest
from gymnasium import spaces

from envs import PICKUP_ENV_ID, list_shifts, make_vec_env, uses_instructions
from envs.minigrid import sample_missions
from envs.missions import MISSION_LENGTH, VOCABULARY, decode_mission, encode_mission
from envs.shifts.minigrid_instructions import HELD_OUT_PAIRS, TRAIN_PAIRS
from envs.shifts.minigrid_layout import NOVEL_COLOURS, TRAIN_COLOURS, TRAIN_DISTRACTOR_TYPES
from test_envs_minigrid import objects, rollout

# ids whose missions use sequencing ("then", "after you", commas), locations and every verb
MISSION_IDS = ["BabyAI-GoToLocalS6N2-v0", "BabyAI-PickupLoc-v0", "BabyAI-PutNextLocal-v0", "BabyAI-SynthSeq-v0",
               "MiniGrid-Fetch-8x8-N3-v0", "MiniGrid-LockedRoom-v0", PICKUP_ENV_ID]


@pytest.mark.parametrize("env_id", MISSION_IDS)
def test_mission_tokens_round_trip_to_the_text(env_id):
    for mission in sample_missions(env_id):
        tokens = encode_mission(mission)
        assert tokens.shape == (MISSION_LENGTH,) and tokens.dtype == np.int64
        assert decode_mission(tokens) == mission


def test_tokens_are_padded_word_ids():
    tokens = encode_mission("pick up the red ball, then open a door")
    words = [VOCABULARY[t] for t in tokens[:10]]
    assert words == ["pick", "up", "the", "red", "ball", ",", "then", "open", "a", "door"]
    assert (tokens[10:] == 0).all() and VOCABULARY[0] == "<pad>"


@pytest.mark.parametrize("call, fragment", [
    (lambda: encode_mission("pick up the magenta ball"), "unknown word 'magenta' in mission 'pick up the magenta ball'"),
    (lambda: encode_mission("go to the ball " * 20), "has 80 words; the most an observation holds is 64"),
    (lambda: make_vec_env("MiniGrid-MultiRoom-N2-S4-v0", instructions=True), "unknown word 'traverse'"),
    (lambda: make_vec_env(PICKUP_ENV_ID, instructions="maybe"), "instructions 'maybe'; valid: auto, true, false"),
    (lambda: make_vec_env("ALE/Pong-v5", instructions=True), "Atari games have no mission"),
])
def test_bad_mission_input_is_one_line(call, fragment):
    with pytest.raises(ValueError) as err:
        call()
    assert fragment in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("env_id, instructions, expected", [
    (PICKUP_ENV_ID, "auto", True), ("BabyAI-GoToLocalS6N2-v0", "auto", True), ("BabyAI-PickupDist-v0", "auto", True),
    ("RedBallDistractors-v0", "auto", False), ("BabyAI-GoToRedBall-v0", "auto", False),  # "a"/"the" only
    ("MiniGrid-DoorKey-5x5-v0", "auto", False), ("MiniGrid-DoorKey-5x5-v0", True, True),
    (PICKUP_ENV_ID, False, False), (PICKUP_ENV_ID, "false", False), ("ALE/Pong-v5", "auto", False),
])
def test_dict_observations_where_the_mission_varies_or_when_asked(env_id, instructions, expected):
    assert uses_instructions(env_id, instructions) == expected
    if env_id.startswith("ALE/"):
        return
    venv = make_vec_env(env_id, 2, seed=0, instructions=instructions)
    obs = venv.reset()
    assert isinstance(venv.observation_space, spaces.Dict) == expected
    if expected:
        assert obs["image"].shape == (2, 7, 7, 3) and obs["mission"].shape == (2, MISSION_LENGTH)
        assert obs["mission"].dtype == np.int64
        assert [decode_mission(m) for m in obs["mission"]] == [e.unwrapped.mission for e in venv.envs]
    else:
        assert obs.shape == (2, 7, 7, 3)


def test_pickup_mission_names_a_training_target_and_only_it_succeeds():
    venv = make_vec_env(PICKUP_ENV_ID, 1, seed=3)
    env = venv.envs[0]
    results = {}
    for episode in range(40):
        obs = venv.reset() if episode == 0 else obs
        base = env.unwrapped
        assert base.mission == "pick up the {} {}".format(*base.target) and base.target in TRAIN_PAIRS
        # face a random object and pick it up
        cells = [(x, y) for x, y, kind, colour in objects(venv, 0)]
        x, y = cells[episode % len(cells)]
        obj = base.grid.get(x, y)
        for direction, (dx, dy) in enumerate([(1, 0), (0, 1), (-1, 0), (0, -1)]):
            if base.grid.get(x - dx, y - dy) is None and 0 < x - dx < base.width - 1 and 0 < y - dy < base.height - 1:
                base.agent_pos, base.agent_dir = np.array((x - dx, y - dy)), direction
                break
        else:
            obs = venv.reset()
            continue
        hit = (obj.color, obj.type) == base.target
        obs, reward, done, _ = venv.step(np.array([base.actions.pickup]))  # the episode ends: an autoreset
        results.setdefault(hit, []).append((float(reward[0]), bool(done[0])))
    assert results[True] and all(r > 0 and d for r, d in results[True])
    assert results[False] and all(r == 0 and d for r, d in results[False])


@pytest.mark.parametrize("shift", ["distractors", "novel_distractors", "size", "novel_instructions", "floor_noise"])
def test_pickup_level_zero_is_bit_identical(shift):
    base = make_vec_env(PICKUP_ENV_ID, 2, seed=1)
    zero = make_vec_env(PICKUP_ENV_ID, 2, seed=1, shifts={shift: 0})
    for a, b in zip(rollout_dict(base, 80), rollout_dict(zero, 80)):
        np.testing.assert_array_equal(a, b)


def rollout_dict(venv, steps):
    """(images [T+1, n, 7, 7, 3], missions [T+1, n, L], rewards [T, n]) of random actions."""
    rng = np.random.default_rng(0)
    obs = venv.reset()
    images, missions, rewards = [obs["image"]], [obs["mission"]], []
    for _ in range(steps):
        obs, r, _, _ = venv.step(rng.integers(0, venv.action_space.n, venv.num_envs))
        images.append(obs["image"]), missions.append(obs["mission"]), rewards.append(r)
    return np.array(images), np.array(missions), np.array(rewards)


def layouts(shifts, resets=30):
    """Per reset: the target pair and the objects (x, y, type, colour) of a 1-env pickup task."""
    venv = make_vec_env(PICKUP_ENV_ID, 1, seed=7, shifts=shifts)
    venv.reset()
    out = []
    for _ in range(resets):
        out.append((venv.envs[0].unwrapped.target, objects(venv, 0)))
        venv.envs[0].reset()
    return out


def test_pickup_shifts_change_only_what_they_claim():
    train = layouts(None)
    distractors = [o for target, objs in train for o in objs if (o[3], o[2]) != target]
    assert {o[2] for o in distractors} <= set(TRAIN_DISTRACTOR_TYPES) and {o[3] for o in distractors} <= set(TRAIN_COLOURS)
    for level in (1, 2, 3):
        shifted = layouts(f"novel_distractors={level}")
        assert [t for t, _ in shifted] == [t for t, _ in train]  # same missions
        for (target, before), (_, after) in zip(train, shifted):
            assert [o[:2] for o in before] == [o[:2] for o in after]  # same positions
        novel = [(o, target) for target, objs in shifted for o in objs
                 if (o[3], o[2]) != target and o[3] in NOVEL_COLOURS]
        share = len(novel) / len(distractors)
        assert {1: 0.2 < share < 0.8, 2: share == 1.0, 3: share == 1.0}[level]
        # level 3: every novel distractor is a box, unless a box of its colour is the target (then a key)
        boxes = [o[2] == "box" or (o[3], "box") == target for o, target in novel]
        assert all(boxes) if level == 3 else not any(o[2] == "box" for o, _ in novel)
    held_out = layouts("novel_instructions=3")
    assert all(t in HELD_OUT_PAIRS for t, _ in held_out) and not any(t in HELD_OUT_PAIRS for t, _ in train)
    assert [[o[:2] for o in objs] for _, objs in held_out] == [[o[:2] for o in objs] for _, objs in train]
    assert set(list_shifts(PICKUP_ENV_ID)) == {"distractors", "novel_distractors", "size", "novel_instructions",
                                               "floor_noise"}
