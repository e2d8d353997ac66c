"""Any registered gymnasium id and `module:EnvId`: EnvSpec, vec envs, no shifts, user shift families."""
import sys
import textwrap

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces

import envs
from envs import EnvSpec, list_shifts, make_vec_env, parse_shifts, register_shift, resolve_env, unregister_shift

TOY_MODULE = "rims_toy_envs"
TOY_SOURCE = '''
import gymnasium as gym
import numpy as np
from gymnasium import spaces


class ToyDict(gym.Env):
    """Dict observations; the episode ends after `length` steps with reward = the step count."""

    def __init__(self, length=3, render_mode=None):
        self.length = length
        self.observation_space = spaces.Dict({"pos": spaces.Box(0, 10, (2,), np.float32), "flag": spaces.Discrete(2)})
        self.action_space = spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def _obs(self):
        return {"pos": self.np_random.uniform(0, 10, 2).astype(np.float32), "flag": int(self.t % 2)}

    def step(self, action):
        self.t += 1
        return self._obs(), float(self.t), self.t >= self.length, False, {}


class ToyImage(ToyDict):
    def __init__(self, render_mode=None):
        super().__init__()
        self.observation_space = spaces.Box(0, 255, (8, 8, 3), np.uint8)

    def _obs(self):
        return self.np_random.integers(0, 256, (8, 8, 3), dtype=np.uint8)


gym.register(id="ToyDict-v0", entry_point=ToyDict)
gym.register(id="ToyImage-v0", entry_point=ToyImage)
'''
TOY_IDS = ("ToyDict-v0", "ToyImage-v0")


@pytest.fixture
def toy_module(tmp_path):
    """A user module on sys.path that registers ToyDict-v0 and ToyImage-v0 when imported."""
    (tmp_path / f"{TOY_MODULE}.py").write_text(textwrap.dedent(TOY_SOURCE))
    sys.path.insert(0, str(tmp_path))
    try:
        yield TOY_MODULE
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop(TOY_MODULE, None)
        for env_id in TOY_IDS:
            gym.registry.pop(env_id, None)


@pytest.fixture
def gravity():
    """A `gravity` shift family for CartPole-v1, registered from the test and removed after it."""
    values = {1: 12.0, 2: 15.0, 3: 20.0}

    def wrap(env, level, rng):
        env.unwrapped.gravity = values[level]
        return env

    info = register_shift("gravity", "gravity of the cart-pole (m/s^2)",
                          {0: "9.8", **{lv: str(g) for lv, g in values.items()}}, env_ids=["CartPole-v1"], wrap=wrap)
    try:
        yield info
    finally:
        unregister_shift("gravity")


def rollout(venv, steps, seed=0):
    """Observations (arrays, or dicts of arrays) and episode infos of `steps` random actions."""
    rng = np.random.default_rng(seed)
    obs, episodes = [venv.reset()], []
    for _ in range(steps):
        o, _, _, infos = venv.step(rng.integers(venv.action_space.n, size=venv.num_envs))
        obs.append(o)
        episodes += [info["episode"] for info in infos if "episode" in info]
    return obs, episodes


def one_line_error(call, fragment):
    with pytest.raises(ValueError) as err:
        call()
    assert fragment in str(err.value) and "\n" not in str(err.value), str(err.value)


def test_cartpole_is_a_generic_env_with_vector_observations_and_no_shifts():
    spec = resolve_env("CartPole-v1")
    assert (spec.kind, spec.observation, spec.instructions, spec.success, spec.shifts, spec.game) == (
        "gym", "vector", False, False, {}, None)
    assert resolve_env("CartPole-v1") is spec  # resolved once
    venv = make_vec_env("CartPole-v1", 2, seed=3)
    obs, episodes = rollout(venv, 100)
    assert obs[0].shape == (2, 4) and venv.action_space.n == 2
    assert episodes and all(set(e) >= {"r", "l"} for e in episodes)
    again, _ = rollout(make_vec_env("CartPole-v1", 2, seed=3), 100)
    other, _ = rollout(make_vec_env("CartPole-v1", 2, seed=4), 100)
    np.testing.assert_array_equal(np.array(obs), np.array(again))
    assert not np.array_equal(np.array(obs), np.array(other))
    assert list_shifts("CartPole-v1") == {} and parse_shifts(None, "CartPole-v1") == {}


def test_discrete_observations_pass_through():
    assert resolve_env("FrozenLake-v1").observation == "vector"
    obs, _ = rollout(make_vec_env("FrozenLake-v1", 2, seed=0), 20)
    assert obs[0].shape == (2,) and obs[0].dtype.kind == "i"


def test_a_user_module_env_builds_from_module_colon_id(toy_module):
    spec = resolve_env(f"{toy_module}:ToyDict-v0")
    assert (spec.id, spec.registered_id, spec.kind, spec.observation) == (
        f"{toy_module}:ToyDict-v0", "ToyDict-v0", "gym", "dict")
    venv = make_vec_env(spec, 2, seed=0, length=4)  # env_kwargs go to the constructor
    assert isinstance(venv.observation_space, spaces.Dict)
    obs, episodes = rollout(venv, 8)
    assert obs[0]["pos"].shape == (2, 2) and obs[0]["flag"].shape == (2,)
    assert [e["l"] for e in episodes] == [4, 4, 4, 4] and episodes[0]["r"] == 1 + 2 + 3 + 4
    assert resolve_env(f"{toy_module}:ToyImage-v0").observation == "image"
    assert make_vec_env(f"{toy_module}:ToyImage-v0", 2).reset().shape == (2, 8, 8, 3)
    assert list_shifts(spec) == {}


@pytest.mark.parametrize("env_id, fragment", [
    ("NoSuchEnv-v9", "unknown env id 'NoSuchEnv-v9'; valid: ALE/<Game>-v5"),
    ("no_such_module_rims:Foo-v0", "cannot import module 'no_such_module_rims' of env id"),
    ("gymnasium:NoSuchEnv-v0", "module 'gymnasium' did not register env id 'NoSuchEnv-v0'"),
    ("a:b:c", "bad env id 'a:b:c'; valid: module:EnvId with one colon"),
    (":CartPole-v1", "bad env id ':CartPole-v1'"),
])
def test_unknown_ids_and_bad_modules_are_one_line(env_id, fragment):
    one_line_error(lambda: resolve_env(env_id), fragment)
    one_line_error(lambda: make_vec_env(env_id), fragment)


def test_shifts_instructions_and_arguments_on_a_generic_env_are_one_line():
    one_line_error(lambda: parse_shifts("distractors=1", "CartPole-v1"), "CartPole-v1 has no shifts")
    one_line_error(lambda: make_vec_env("CartPole-v1", shifts="colour=2"), "CartPole-v1 has no shifts")
    one_line_error(lambda: make_vec_env("CartPole-v1", instructions=True), "only MiniGrid/BabyAI envs have a mission")
    one_line_error(lambda: make_vec_env("CartPole-v1", wings=2), "bad env_kwargs {'wings': 2} for CartPole-v1")


def test_a_shift_family_registered_for_cartpole(gravity):
    assert list_shifts("CartPole-v1") == {"gravity": gravity}
    assert gravity.levels == {0: "9.8", 1: "12.0", 2: "15.0", 3: "20.0"}
    assert "gravity" not in list_shifts("MiniGrid-Empty-5x5-v0") and "gravity" not in list_shifts("Pendulum-v1")
    assert parse_shifts("gravity=2", "CartPole-v1") == {"gravity": 2}
    one_line_error(lambda: parse_shifts("gravity=1", "MiniGrid-Empty-5x5-v0"),
                   "does not apply to MiniGrid-Empty-5x5-v0")
    base, _ = rollout(make_vec_env("CartPole-v1", 2, seed=0), 30)
    zero, _ = rollout(make_vec_env("CartPole-v1", 2, seed=0, shifts="gravity=0"), 30)
    heavy_env = make_vec_env("CartPole-v1", 2, seed=0, shifts="gravity=3")
    heavy, _ = rollout(heavy_env, 30)
    np.testing.assert_array_equal(np.array(base), np.array(zero))
    assert [env.unwrapped.gravity for env in heavy_env.envs] == [20.0, 20.0]
    np.testing.assert_array_equal(base[0], heavy[0])  # the same start: only the dynamics differ
    assert not np.array_equal(np.array(base), np.array(heavy))


def test_shift_families_take_constructor_arguments_and_apply_to_minigrid_too():
    register_shift("short", "a shorter step budget", {0: "default", 2: "max_steps=3"},
                   applies=lambda env_id: env_id.startswith("MiniGrid-Empty"), env_kwargs={2: {"max_steps": 3}},
                   changes_scale=True)
    try:
        assert list(list_shifts("MiniGrid-Empty-5x5-v0")) == ["size", "floor_noise", "short"]
        assert list_shifts("MiniGrid-Empty-5x5-v0")["short"].changes_scale
        assert "short" not in list_shifts("ALE/Pong-v5")  # Atari ids keep their built-in shifts only
        one_line_error(lambda: parse_shifts("short=1", "MiniGrid-Empty-5x5-v0"), "level for shift 'short' on")
        venv = make_vec_env("MiniGrid-Empty-5x5-v0", 2, seed=0, shifts="short=2")
        _, episodes = rollout(venv, 6)
        assert [e["l"] for e in episodes] == [3, 3, 3, 3]
    finally:
        unregister_shift("short")
    assert "short" not in list_shifts("MiniGrid-Empty-5x5-v0")


@pytest.mark.parametrize("kwargs, fragment", [
    (dict(name="colour"), "shift name 'colour' is a built-in shift"),
    (dict(name="bad name"), "bad shift name 'bad name'"),
    (dict(levels={1: "x", 2: "y"}), "bad levels [1, 2] of shift 'toy'; valid: 0 (the unchanged env)"),
    (dict(levels={0: "x", 4: "y"}), "bad levels [0, 4]"),
    (dict(env_ids=None), "give env_ids or applies"),
    (dict(wrap=None), "give env_kwargs, wrap or both"),
    (dict(env_kwargs={3: {"a": 1}}), "env_kwargs of shift 'toy' has levels [3]; valid: its levels >= 1, [1]"),
])
def test_bad_shift_families_are_refused_in_one_line(kwargs, fragment):
    args = dict(name="toy", description="a toy", levels={0: "none", 1: "some"}, env_ids=["CartPole-v1"],
                wrap=lambda env, level, rng: env)
    args.update(kwargs)
    one_line_error(lambda: register_shift(args.pop("name"), args.pop("description"), args.pop("levels"), **args),
                   fragment)
    assert "toy" not in envs.shifts.shift_names()


def test_a_name_is_registered_once_unless_replaced(gravity):
    one_line_error(lambda: register_shift("gravity", "again", {0: "a", 1: "b"}, env_ids=["CartPole-v1"],
                                          wrap=lambda env, level, rng: env), "shift 'gravity' is registered already")
    register_shift("gravity", "replaced", {0: "a", 1: "b"}, env_ids=["CartPole-v1"], wrap=lambda env, level, rng: env,
                   replace=True)
    assert list_shifts("CartPole-v1")["gravity"].description == "replaced"
    one_line_error(lambda: unregister_shift("nothing"), "no shift 'nothing' is registered")


def test_a_spec_is_handed_down_and_never_resolved_again(monkeypatch):
    specs = {env_id: resolve_env(env_id) for env_id in ("CartPole-v1", "MemoryDistractors-v0")}

    def refuse(env_id):
        raise AssertionError(f"{env_id} resolved again")

    monkeypatch.setattr("envs.spec.resolve_env", refuse)
    for spec in specs.values():
        assert isinstance(spec, EnvSpec)
        venv = make_vec_env(spec, 2, seed=0, shifts=None if spec.kind == "gym" else "distractors=1")
        venv.reset()
        assert list_shifts(spec) == spec.shifts and not envs.uses_instructions(spec)
