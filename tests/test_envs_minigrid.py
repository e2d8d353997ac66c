"""MiniGrid/BabyAI factory and shifts: shapes, determinism, level 0 identity, what each level changes."""
import numpy as np
import pytest

from envs import DEFAULT_ENV_ID, MEMORY_ENV_ID, make_vec_env
from envs.shifts.minigrid_layout import NOVEL_COLOURS, TRAIN_COLOURS
from minigrid.core.world_object import Ball, Floor

FLOOR, EMPTY = 3, 1


def rollout(venv, steps, action_seed=0):
    """Random actions (same for the same action_seed); returns obs [T+1, n, ...], rewards, dones, episodes."""
    rng = np.random.default_rng(action_seed)
    obs, rewards, dones, episodes = [venv.reset()], [], [], []
    for _ in range(steps):
        o, r, d, infos = venv.step(rng.integers(0, venv.action_space.n, venv.num_envs))
        obs.append(o), rewards.append(r), dones.append(d)
        episodes += [info["episode"] for info in infos if "episode" in info]
    return np.array(obs), np.array(rewards), np.array(dones), episodes


def objects(venv, index):
    """(x, y, type, colour) of every non-wall, non-floor object in sub-env `index`."""
    grid = venv.envs[index].unwrapped.grid
    return [(x, y, c.type, c.color) for x in range(grid.width) for y in range(grid.height)
            if (c := grid.get(x, y)) is not None and c.type not in ("wall", "floor")]


def test_default_env_obs_episodes_and_determinism():
    a, b = make_vec_env(DEFAULT_ENV_ID, 2, seed=5), make_vec_env(DEFAULT_ENV_ID, 2, seed=5)
    oa, ra, da, ea = rollout(a, 150)
    ob, *_ = rollout(b, 150)
    assert oa.shape == (151, 2, 7, 7, 3) and oa.dtype == np.uint8
    np.testing.assert_array_equal(oa, ob)
    assert ea and all(set(e) >= {"r", "l"} for e in ea)
    assert a.action_space.n == 3
    oc, *_ = rollout(make_vec_env(DEFAULT_ENV_ID, 2, seed=6), 150)
    assert not np.array_equal(oa, oc)


def test_episode_return_matches_summed_rewards():
    venv = make_vec_env(DEFAULT_ENV_ID, 1, seed=0)
    _, rewards, dones, episodes = rollout(venv, 200)
    ends = np.flatnonzero(dones[:, 0])
    assert len(episodes) == len(ends) >= 1
    start = 0
    for end, episode in zip(ends, episodes):
        assert episode["l"] == end - start + 1
        assert np.isclose(episode["r"], rewards[start:end + 1, 0].sum())
        start = end + 1


@pytest.mark.parametrize("env_id", [DEFAULT_ENV_ID, MEMORY_ENV_ID])
@pytest.mark.parametrize("shift", ["distractors", "novel_distractors", "size", "floor_noise"])
def test_level_zero_is_bit_identical(shift, env_id):
    base, *_ = rollout(make_vec_env(env_id, 2, seed=1), 60)
    zero, *_ = rollout(make_vec_env(env_id, 2, seed=1, shifts={shift: 0}), 60)
    np.testing.assert_array_equal(base, zero)


def test_distractors_change_the_object_count_of_every_sub_env():
    for level, count in {0: 2, 3: 8}.items():
        venv = make_vec_env(DEFAULT_ENV_ID, 2, seed=2, shifts={"distractors": level})
        venv.reset()
        for i in range(2):
            assert len(objects(venv, i)) == count + 1  # + the red ball


def test_novel_distractors_change_only_colours():
    base = make_vec_env(DEFAULT_ENV_ID, 2, seed=3)
    novel = make_vec_env(DEFAULT_ENV_ID, 2, seed=3, shifts="novel_distractors=2")
    red = make_vec_env(DEFAULT_ENV_ID, 2, seed=3, shifts="novel_distractors=3")
    for venv in (base, novel, red):
        venv.reset()
    for i in range(2):
        b, n, r = objects(base, i), objects(novel, i), objects(red, i)
        assert [o[:2] for o in b] == [o[:2] for o in n] == [o[:2] for o in r]  # same positions
        assert [o[2] for o in b] == [o[2] for o in n]  # same types
        target = ("ball", "red")
        assert all(o[3] in TRAIN_COLOURS for o in b if o[2:] != target)
        assert all(o[3] in NOVEL_COLOURS for o in n if o[2:] != target)
        dists = [o for o in r if o[2:] != target]
        assert len(dists) == 2 and all(o[3] == "red" and o[2] != "ball" for o in dists)


def test_size_ladder_sets_grid_side():
    venv = make_vec_env("MiniGrid-DoorKey-5x5-v0", 2, seed=0, shifts="size=2")
    venv.reset()
    assert [e.unwrapped.width for e in venv.envs] == [8, 8]


def test_floor_noise_changes_only_floor_cells_not_dynamics():
    base = make_vec_env(DEFAULT_ENV_ID, 2, seed=4)
    noisy = make_vec_env(DEFAULT_ENV_ID, 2, seed=4, shifts="floor_noise=3")
    ob, rb, db, _ = rollout(base, 120)
    on, rn, dn, _ = rollout(noisy, 120)
    np.testing.assert_array_equal(rb, rn)
    np.testing.assert_array_equal(db, dn)
    changed = (ob != on).any(-1)
    assert changed[:, 0].any() and changed[:, 1].any()  # every sub-env is shifted
    assert (on[..., 0][changed] == FLOOR).all() and (ob[..., 0][changed] == EMPTY).all()
    for i in range(2):
        np.testing.assert_array_equal(base.envs[i].unwrapped.agent_pos, noisy.envs[i].unwrapped.agent_pos)


def test_floor_tiles_let_objects_be_dropped_on_them():
    venv = make_vec_env("BabyAI-PickupLoc-v0", 1, seed=0, shifts="floor_noise=1")
    venv.reset()
    env = venv.envs[0]
    base = env.unwrapped
    base.agent_pos, base.agent_dir = (2, 2), 0
    front = tuple(int(v) for v in base.front_pos)
    base.grid.set(*front, Floor("yellow"))
    base.carrying = Ball("green")
    env.step(base.actions.drop)
    assert base.carrying is None and base.grid.get(*front).type == "ball"
    base.grid.set(*front, Floor("yellow"))
    env.step(base.actions.drop)  # nothing carried: the tile stays
    assert base.grid.get(*front).type == "floor"


def test_babyai_levels_reset_quietly(capsys):
    venv = make_vec_env("BabyAI-GoToRedBall-v0", 2, seed=0, shifts="distractors=3")
    rollout(venv, 20)
    assert "Sampling rejected" not in capsys.readouterr().out


def test_rgb_observation_option_and_rendered_frames_show_floor_noise():
    obs = make_vec_env(DEFAULT_ENV_ID, 2, seed=0, observation="rgb").reset()
    assert obs.shape == (2, 56, 56, 3) and obs.dtype == np.uint8
    frames = []
    for level in (0, 3):
        venv = make_vec_env(DEFAULT_ENV_ID, 2, seed=0, shifts={"floor_noise": level}, render_mode="rgb_array")
        venv.reset()
        frames.append(np.stack(venv.get_images()))
    assert frames[0].shape[0] == 2 and frames[0].shape[-1] == 3
    assert all((frames[0][i] != frames[1][i]).any() for i in range(2))
