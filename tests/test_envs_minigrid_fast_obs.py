"""envs.minigrid_fast_obs: bit-identical to MiniGridEnv.gen_obs() at every step, and used by default."""
import numpy as np
import pytest
from minigrid.core.grid import Grid
from minigrid.core.world_object import Ball, Door, Floor, Key, Wall
from minigrid.envs import DoorKeyEnv
from minigrid.minigrid_env import MiniGridEnv

from envs import make_vec_env
from envs.minigrid import FastSymbolicObs, IntActions, make_minigrid_vec_env
from envs.minigrid_fast_obs import BoundFastGenObs, visibility
from envs.missions import decode_mission

DOOR, STEPS = 4, 300
# (env id, env kwargs, what a random rollout of STEPS steps in 2 envs (seed 0) must show: the carried
# object, doors open/closed/locked, unseen cells, an episode end, see_through_walls)
CASES = [
    ("MiniGrid-DoorKey-5x5-v0", {}, {"carry", "open", "closed", "locked", "unseen", "done"}),
    ("MiniGrid-DoorKey-8x8-v0", {}, {"carry", "open", "locked", "unseen"}),
    ("MiniGrid-DoorKey-16x16-v0", {}, {"locked", "unseen"}),
    ("RedBallDistractors-v0", {}, {"see_through", "done"}),
    ("PickupDistractors-v0", {}, {"see_through", "done", "mission"}),
    ("BabyAI-GoToLocal-v0", {}, {"carry", "unseen", "done", "mission"}),
    ("BabyAI-GoToLocal-v0", {"instructions": False}, {"carry", "unseen", "done"}),
    ("MiniGrid-Fetch-8x8-N3-v0", {}, {"see_through", "done", "mission"}),
    ("MiniGrid-MultiRoom-N2-S4-v0", {}, {"open", "closed", "unseen", "done"}),
    ("MiniGrid-KeyCorridorS3R2-v0", {}, {"open", "closed", "locked", "unseen", "done", "mission"}),
    ("MiniGrid-LavaGapS7-v0", {}, {"unseen", "done"}),
    ("BabyAI-UnlockPickup-v0", {}, {"carry", "locked", "unseen", "done", "mission"}),
    ("MiniGrid-DoorKey-8x8-v0", {"agent_view_size": 5}, {"carry", "open", "locked", "unseen"}),
    ("MiniGrid-DoorKey-8x8-v0", {"instructions": True}, {"carry", "open", "locked", "unseen", "mission"}),
    ("MiniGrid-DoorKey-8x8-v0", {"agent_view_size": 9}, {"carry", "open", "locked", "unseen"}),
    ("RedBallDistractors-v0", {"agent_view_size": 3}, {"see_through", "done"}),
]


def check_sub_envs(venv, obs: np.ndarray | dict, seen: set[str]) -> None:
    """obs[i] (or obs["image"][i] and the decoded obs["mission"][i] of dict observations) and sub-env i's
    gen_obs() equal MiniGrid's own gen_obs(); adds what the views show to `seen`."""
    if isinstance(obs, dict):
        seen.add("mission")
        missions, obs = obs["mission"], obs["image"]
    for i, env in enumerate(venv.envs):
        base = env.unwrapped
        assert isinstance(base.gen_obs, BoundFastGenObs) and base.gen_obs.env is base
        ref, fast = MiniGridEnv.gen_obs(base), base.gen_obs()
        np.testing.assert_array_equal(obs[i], ref["image"])
        if "mission" in seen:
            assert decode_mission(missions[i]) == ref["mission"]
        np.testing.assert_array_equal(fast["image"], ref["image"])
        assert fast["image"].dtype == np.uint8 and fast["image"].shape == ref["image"].shape
        assert fast["direction"] == ref["direction"] and fast["mission"] == ref["mission"]
        doors = obs[i][..., 0] == DOOR
        seen |= {name for name, state in (("open", 0), ("closed", 1), ("locked", 2))
                 if (doors & (obs[i][..., 2] == state)).any()}
        seen |= {"carry"} if base.carrying is not None else set()
        seen |= {"unseen"} if (obs[i][..., 0] == 0).any() else set()
        seen |= {"see_through"} if base.see_through_walls else set()


@pytest.mark.parametrize("floor", [0, 3])
@pytest.mark.parametrize("env_id, kwargs, expected", CASES, ids=[f"{c[0]}{c[1] or ''}" for c in CASES])
def test_fast_obs_equals_minigrid_gen_obs_at_every_step(env_id, kwargs, expected, floor):
    venv = make_vec_env(env_id, 2, seed=0, shifts={"floor_noise": floor}, **kwargs)
    assert all(env.get_wrapper_attr("gen_obs").__class__ is BoundFastGenObs for env in venv.envs)
    assert all(any(isinstance(w, FastSymbolicObs) for w in wrappers(env)) for env in venv.envs)
    rng, seen = np.random.default_rng(0), set()
    check_sub_envs(venv, venv.reset(), seen)
    for _ in range(STEPS):
        obs, _, dones, _ = venv.step(rng.integers(0, venv.action_space.n, venv.num_envs))
        check_sub_envs(venv, obs, seen)
        seen |= {"done"} if dones.any() else set()
    assert expected <= seen, f"the rollout did not show {expected - seen}"


def wrappers(env) -> list:
    """The wrapper chain of `env`, outermost first."""
    chain = [env]
    while hasattr(chain[-1], "env"):
        chain.append(chain[-1].env)
    return chain


def random_grid(rng: np.random.Generator, size: int) -> Grid:
    """A size x size grid of empty cells, walls, floors, balls and open/closed/locked doors."""
    grid = Grid(size, size)
    makers = [lambda: None, lambda: None, lambda: None, Wall, lambda: Floor("red"), lambda: Ball("blue"),
              lambda: Door("red", is_open=True), lambda: Door("red"), lambda: Door("red", is_locked=True)]
    for x in range(size):
        for y in range(size):
            grid.set(x, y, makers[rng.integers(len(makers))]())
    return grid


@pytest.mark.parametrize("size", [3, 5, 7, 9])
def test_visibility_equals_process_vis_on_random_grids(size):
    rng = np.random.default_rng(size)
    for _ in range(300):
        grid = random_grid(rng, size)
        view = [[grid.get(i, j) for i in range(size)] for j in range(size)]
        mask = visibility(view)
        expected = grid.process_vis((size // 2, size - 1))  # [i, j]
        np.testing.assert_array_equal(np.array(mask).T, expected)


def test_agent_cell_shows_the_carried_object_and_rgb_path_is_unchanged():
    venv = make_vec_env("MiniGrid-DoorKey-5x5-v0", 1, seed=0)
    venv.reset()
    base = venv.envs[0].unwrapped
    for carrying in (None, Key("yellow"), Ball("green")):
        base.carrying = carrying
        np.testing.assert_array_equal(base.gen_obs()["image"], MiniGridEnv.gen_obs(base)["image"])
    rgb = make_vec_env("MiniGrid-DoorKey-5x5-v0", 1, seed=0, observation="rgb")
    assert not any(isinstance(w, FastSymbolicObs) for w in wrappers(rgb.envs[0]))
    assert "gen_obs" not in vars(rgb.envs[0].unwrapped)


def test_envs_overriding_gen_obs_keep_their_own():
    class Custom(DoorKeyEnv):
        def gen_obs_grid(self, agent_view_size=None):
            return super().gen_obs_grid(agent_view_size)

    plain, custom = FastSymbolicObs(DoorKeyEnv()), FastSymbolicObs(Custom())
    assert isinstance(plain.unwrapped.gen_obs, BoundFastGenObs)
    assert "gen_obs" not in vars(custom.unwrapped)


@pytest.mark.parametrize("env_id", ["MiniGrid-DoorKey-8x8-v0", "BabyAI-GoToLocal-v0", "RedBallDistractors-v0"])
def test_fast_stack_rollout_equals_minigrid_stack(env_id):
    """FastSymbolicObs + IntActions change no observation, reward, done or info (floor noise on: its
    action checks see the converted actions)."""
    fast = make_minigrid_vec_env(env_id, 2, 0, {}, floor_fraction=0.25)
    slow = make_minigrid_vec_env(env_id, 2, 0, {}, floor_fraction=0.25, fast_obs=False, int_actions=False)
    assert isinstance(fast.envs[0].env, IntActions) and not any(
        isinstance(w, (IntActions, FastSymbolicObs)) for w in wrappers(slow.envs[0]))
    np.testing.assert_array_equal(fast.reset(), slow.reset())
    rng = np.random.default_rng(1)
    for _ in range(200):
        actions = rng.integers(0, fast.action_space.n, 2)
        out_fast, out_slow = fast.step(actions), slow.step(actions)
        for a, b in zip(out_fast[:3], out_slow[:3]):
            np.testing.assert_array_equal(a, b)
        for info_fast, info_slow in zip(out_fast[3], out_slow[3]):
            assert info_fast.keys() == info_slow.keys()
            for key in info_fast:
                if key == "episode":
                    assert {k: info_fast[key][k] for k in "rl"} == {k: info_slow[key][k] for k in "rl"}
                else:
                    np.testing.assert_array_equal(info_fast[key], info_slow[key])
