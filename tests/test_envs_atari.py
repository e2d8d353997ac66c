"""Atari factory and shifts: obs format, native/RGB/Python paths agree, visual shifts keep the game."""
import numpy as np
import pytest

from envs import make_vec_env
from envs.shifts.atari_visual import OCCLUSION_FRACTION, SPRITE_COUNT, SPRITE_RADIUS

GAME = "ALE/Breakout-v5"
VISUAL = ("colour", "noise", "background", "sprites", "occlusion")


def rollout(venv, steps, action_seed=0):
    """Random actions; returns obs [T+1, n, 4, 84, 84], rewards, dones, lives [T, n],
    episodes [(step, sub-env, info["episode"])], RGB frames [T, n, 210, 160, 3] (if rendered)."""
    rng = np.random.default_rng(action_seed)
    obs, rewards, dones, lives, episodes, frames = [venv.reset()], [], [], [], [], []
    for _ in range(steps):
        o, r, d, infos = venv.step(rng.integers(0, venv.action_space.n, venv.num_envs))
        obs.append(o), rewards.append(r), dones.append(d), lives.append([i["lives"] for i in infos])
        episodes += [(len(rewards) - 1, i, info["episode"]) for i, info in enumerate(infos) if "episode" in info]
        if venv.render_mode == "rgb_array":
            frames.append(np.stack(venv.get_images()))
    return np.array(obs), np.array(rewards), np.array(dones), np.array(lives), episodes, np.array(frames)


def test_obs_format_and_determinism():
    a, b = make_vec_env(GAME, 2, seed=7), make_vec_env(GAME, 2, seed=7)
    oa, ra, *_ = rollout(a, 40)
    ob, rb, *_ = rollout(b, 40)
    assert a.observation_space.shape == (4, 84, 84) and oa.shape == (41, 2, 4, 84, 84) and oa.dtype == np.uint8
    np.testing.assert_array_equal(oa, ob)
    np.testing.assert_array_equal(ra, rb)
    again_a, *_ = rollout(a, 10)  # a second reset (as SB3's learn() does) stays reproducible
    again_b, *_ = rollout(b, 10)
    np.testing.assert_array_equal(again_a, again_b)


def test_rgb_path_is_bit_identical_to_cpp_preprocessing():
    """Frames shifted in Python go through our grayscale/resize/stack: unshifted, it equals ALE's C++."""
    cpp, *_ = rollout(make_vec_env(GAME, 2, seed=3, training=False), 250)
    rgb, *_, frames = rollout(make_vec_env(GAME, 2, seed=3, training=False, render_mode="rgb_array"), 250)
    np.testing.assert_array_equal(cpp, rgb)
    assert frames.shape == (250, 2, 210, 160, 3)


def test_level_zero_is_bit_identical():
    base, *_ = rollout(make_vec_env(GAME, 2, seed=1), 30)
    for shift in (*VISUAL, "sticky", "flavour"):
        zero, *_ = rollout(make_vec_env(GAME, 2, seed=1, shifts={shift: 0}), 30)
        np.testing.assert_array_equal(base, zero, err_msg=shift)


def test_visual_shifts_keep_rewards_lives_and_dones_and_shift_every_sub_env():
    kw = dict(n_envs=2, seed=2, training=False, render_mode="rgb_array")
    base, rb, db, lb, eb, fb = rollout(make_vec_env(GAME, **kw), 100)
    for shift in VISUAL:
        shifted, rs, ds, ls, es, fs = rollout(make_vec_env(GAME, shifts={shift: 2}, **kw), 100)
        np.testing.assert_array_equal(rb, rs)
        np.testing.assert_array_equal(db, ds)
        np.testing.assert_array_equal(lb, ls)
        assert [e[:2] + (e[2]["r"], e[2]["l"]) for e in eb] == [e[:2] + (e[2]["r"], e[2]["l"]) for e in es]
        for i in range(2):  # every sub-env shifted
            assert (shifted[:, i] != base[:, i]).any(), (shift, i)
        check_frames(shift, fb, fs)


def check_frames(shift, base, shifted):
    """Each shift changes what it claims on the RGB frames [T, n, 210, 160, 3]."""
    changed = (base != shifted).any(-1)  # [T, n, H, W]
    if shift == "occlusion":
        columns = changed.any(2)  # [T, n, W]
        width = round(OCCLUSION_FRACTION[2] * 160)
        assert (columns.sum(-1) <= width).all() and (shifted[changed] == 128).all()
    elif shift == "sprites":
        assert (changed.sum((2, 3)) <= SPRITE_COUNT[2] * (2 * SPRITE_RADIUS + 1) ** 2).all()
    elif shift == "background":
        bg = base[0, 0, 0, 0]  # Breakout's background is black; the top-left pixel is background
        assert (base[changed] == bg).all() and changed.mean() > 0.5
    elif shift == "colour":  # one colour map per episode: equal input colours -> equal output colours
        for i in range(base.shape[1]):
            keys = base[:10, i].reshape(-1, 3) @ np.array([65536, 256, 1])
            out = shifted[:10, i].reshape(-1, 3)
            for key in np.unique(keys)[:5]:
                assert (out[keys == key] == out[keys == key][0]).all()
    elif shift == "noise":
        diff = (shifted.astype(int) - base.astype(int))[(base > 64) & (base < 192)]  # away from clipping
        assert changed.mean() > 0.8 and abs(diff.mean()) < 1 and 14 < diff.std() < 18  # sigma 16


def test_visual_shifts_keep_emulator_ram():
    """Per-env Python path exposes RAM: shifted and unshifted games stay in the same state."""
    kw = dict(n_envs=2, seed=4, training=False, backend="python")
    base, shifted = make_vec_env(GAME, **kw), make_vec_env(GAME, shifts=",".join(f"{s}=3" for s in VISUAL), **kw)
    base.reset(), shifted.reset()
    rng = np.random.default_rng(0)
    for _ in range(60):
        actions = rng.integers(0, 4, 2)
        ob, rb, *_ = base.step(actions)
        os_, rs, *_ = shifted.step(actions)
        np.testing.assert_array_equal(rb, rs)
        for i in range(2):
            np.testing.assert_array_equal(base.ram(i), shifted.ram(i))
    assert (ob != os_).any()


def test_visual_shifts_are_deterministic_under_seed_and_differ_across_seeds():
    shifts = "colour=3,noise=1,background=3,sprites=3,occlusion=1"
    a, *_ = rollout(make_vec_env(GAME, 2, seed=5, shifts=shifts), 20)
    b, *_ = rollout(make_vec_env(GAME, 2, seed=5, shifts=shifts), 20)
    c, *_ = rollout(make_vec_env(GAME, 2, seed=6, shifts=shifts), 20)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_episode_info_has_unclipped_return_and_training_ends_agent_episodes_on_life_loss():
    game, steps = "ALE/SpaceInvaders-v5", 700
    train = rollout(make_vec_env(game, 2, seed=0, training=True), steps)
    evaluate = rollout(make_vec_env(game, 2, seed=0, training=False), steps)
    _, r_train, d_train, _, e_train, _ = train
    _, r_eval, d_eval, _, e_eval, _ = evaluate
    assert set(np.unique(r_train)) <= {0.0, 1.0} and r_eval.max() > 1  # clipped vs raw points
    assert e_eval and [e[:2] + (e[2]["r"],) for e in e_train] == [e[:2] + (e[2]["r"],) for e in e_eval]
    assert d_train.sum() > d_eval.sum() == len(e_eval)  # life losses end agent episodes in training
    start = [0, 0]
    for step, i, episode in e_eval:  # episode return = summed raw rewards of that game
        assert np.isclose(episode["r"], r_eval[start[i]:step + 1, i].sum())
        assert episode["l"] == step + 1 - start[i]
        start[i] = step + 1


def test_noframeskip_v4_ids_work():
    venv = make_vec_env("PongNoFrameskip-v4", 2, seed=0, shifts="sticky=2")
    obs, *_ = rollout(venv, 5)
    assert obs.shape == (6, 2, 4, 84, 84)


def test_sticky_and_flavour_reach_the_emulator():
    venv = make_vec_env(GAME, 2, seed=0, shifts="sticky=2,flavour=3")
    venv.reset()
    for env in venv.source.envs:
        ale = env.unwrapped
        assert ale.ale.getFloat("repeat_action_probability") == pytest.approx(0.5)
        assert (ale._game_mode, ale._game_difficulty) == (12, 1)
    obs, *_ = rollout(venv, 5)
    assert obs.shape == (6, 2, 4, 84, 84)


def test_sb3_algorithms_and_wrappers_accept_the_vec_env():
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import VecNormalize

    venv = VecNormalize(make_vec_env(GAME, 2, seed=0, shifts="sprites=1"), norm_obs=False)
    model = PPO("CnnPolicy", venv, n_steps=8, batch_size=16, n_epochs=1, seed=0, device="cpu")
    model.learn(16)
    assert model.num_timesteps == 16
