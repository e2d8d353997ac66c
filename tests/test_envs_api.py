"""envs public API: shift parsing, listing, id checks and the docs table."""
import pytest

from envs import DEFAULT_ENV_ID, is_atari, list_shifts, make_vec_env, parse_shifts, shift_table_markdown
from envs.shifts import ALL_SHIFTS, LEVELS


def test_parse_shifts_accepts_string_dict_and_none():
    assert parse_shifts("colour=2, sprites=1") == {"colour": 2, "sprites": 1}
    assert parse_shifts({"noise": "3"}) == {"noise": 3}
    assert parse_shifts(None) == {} and parse_shifts("") == {}
    assert parse_shifts("distractors=0", DEFAULT_ENV_ID) == {"distractors": 0}


@pytest.mark.parametrize("spec, env_id, fragment", [
    ("colour=4", None, "'colour': 4; valid: 0, 1, 2, 3"),
    ("colour=x", None, "'x'; valid: 0, 1, 2, 3"),
    ("wobble=1", None, "shift 'wobble'; valid: flavour"),
    ("colour", None, "write name=level"),
    ("distractors=1", "ALE/Pong-v5", "does not apply to ALE/Pong-v5; valid: flavour, sticky"),
    ("colour=1", DEFAULT_ENV_ID, "does not apply to RedBallDistractors-v0; valid: distractors"),
    ("flavour=1", "ALE/Asterix-v5", "does not apply"),  # Asterix has one mode and one difficulty
])
def test_bad_shifts_raise_one_line_value_error(spec, env_id, fragment):
    with pytest.raises(ValueError) as err:
        parse_shifts(spec, env_id)
    assert fragment in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("env_id", ["ALE/NoSuchGame-v5", "CartPol-v1", "nonsense", None])
def test_unknown_env_id_names_valid_families(env_id):
    with pytest.raises(ValueError, match=r"env id .*valid: ALE/<Game>-v5, <Game>NoFrameskip-v4.*module:EnvId") as err:
        make_vec_env(env_id)
    assert "\n" not in str(err.value)


def test_unknown_env_id_suggests_close_registered_ids():
    with pytest.raises(ValueError, match="did you mean CartPole-v1"):
        make_vec_env("CartPol-v1")


def test_bad_factory_arguments():
    with pytest.raises(ValueError, match="n_envs 0"):
        make_vec_env(DEFAULT_ENV_ID, n_envs=0)
    with pytest.raises(ValueError, match="render_mode 'human'; valid: None, rgb_array"):
        make_vec_env(DEFAULT_ENV_ID, render_mode="human")
    with pytest.raises(ValueError, match="observation 'pixels'; valid: symbolic, rgb"):
        make_vec_env(DEFAULT_ENV_ID, observation="pixels")
    with pytest.raises(ValueError, match="backend 'gpu'; valid: auto, native, python"):
        make_vec_env("ALE/Pong-v5", backend="gpu")
    with pytest.raises(ValueError, match="Atari option 'frame_skip'; valid: backend, mode, difficulty"):
        make_vec_env("ALE/Pong-v5", frame_skip=2)
    with pytest.raises(ValueError, match="mode of pong 5; valid: 0, 1"):
        make_vec_env("ALE/Pong-v5", mode=5)
    with pytest.raises(ValueError, match="bad env_kwargs {'wings': 2} for RedBallDistractors-v0"):
        make_vec_env(DEFAULT_ENV_ID, wings=2)


def test_is_atari():
    assert is_atari("ALE/Breakout-v5") and is_atari("BreakoutNoFrameskip-v4")
    assert not is_atari(DEFAULT_ENV_ID) and not is_atari("MiniGrid-DoorKey-5x5-v0")


def test_list_shifts_describes_levels_0_to_3():
    atari = list_shifts("ALE/Breakout-v5")
    assert set(atari) == {"flavour", "sticky", "colour", "noise", "background", "sprites", "occlusion"}
    assert atari["sticky"].levels == {0: "p=0.25", 1: "p=0.35", 2: "p=0.5", 3: "p=0.75"}
    assert list_shifts("BreakoutNoFrameskip-v4")["sticky"].levels[0] == "p=0.0"
    grid = list_shifts(DEFAULT_ENV_ID)
    assert set(grid) == {"distractors", "novel_distractors", "size", "floor_noise"}
    assert grid["distractors"].levels == {0: "num_dists=2", 1: "num_dists=4", 2: "num_dists=6", 3: "num_dists=8"}
    assert list_shifts("MiniGrid-DoorKey-5x5-v0")["size"].levels == {0: "size=5", 1: "size=6", 2: "size=8", 3: "size=16"}
    assert "numObjs" in list_shifts("MiniGrid-Fetch-8x8-N3-v0")["distractors"].description
    for info in [*atari.values(), *grid.values()]:
        assert set(info.levels) == set(LEVELS) and info.description


def test_markdown_table_lists_every_shift():
    table = shift_table_markdown()
    for name in ALL_SHIFTS:
        assert f"| `{name}` |" in table
