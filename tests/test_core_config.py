"""RIMsConfig validation and RIMs input checks: bad input raises one-line ValueErrors naming the value."""
import pytest
import torch

from rims_rl import RIMs, RIMsConfig


@pytest.mark.parametrize("kwargs, field", [
    ({"k": 7}, "k"),
    ({"k": 0}, "k"),
    ({"num_units": 0}, "num_units"),
    ({"unit_size": 0}, "unit_size"),
    ({"unit_size": 2.5}, "unit_size"),
    ({"cell": "rnn"}, "cell"),
    ({"selection": "random"}, "selection"),
    ({"input_key_size": 0}, "input_key_size"),
    ({"input_value_size": 0}, "input_value_size"),
    ({"num_input_heads": 0}, "num_input_heads"),
    ({"comm_key_size": -1}, "comm_key_size"),
    ({"comm_value_size": 0}, "comm_value_size"),
    ({"num_comm_heads": 0}, "num_comm_heads"),
    ({"input_dropout": 1.0}, "input_dropout"),
    ({"comm_dropout": -0.1}, "comm_dropout"),
    ({"communication": "yes"}, "communication"),
    ({"input_attention": False, "k": 4}, "k"),
])
def test_invalid_config_raises_one_line_naming_the_field(kwargs, field):
    with pytest.raises(ValueError, match=rf"RIMsConfig\.{field}=") as err:
        RIMsConfig(**kwargs)
    assert "\n" not in str(err.value)
    assert "valid" in str(err.value)


def test_defaults_are_valid_and_value_size_resolves():
    cfg = RIMsConfig(unit_size=10)
    assert cfg.value_size == 40
    assert RIMsConfig(unit_size=10, input_value_size=7).value_size == 7
    assert RIMsConfig(num_units=3, k=3, input_attention=False).k == 3
    assert cfg.to_dict()["unit_size"] == 10


def test_bad_module_arguments_raise():
    cfg = RIMsConfig(num_units=3, k=2, unit_size=4)
    with pytest.raises(ValueError, match="input_size=0"):
        RIMs(0, cfg)
    with pytest.raises(ValueError, match="num_input_rows=0"):
        RIMs(5, cfg, num_input_rows=0)
    with pytest.raises(ValueError, match="config="):
        RIMs(5, {"k": 2})


def test_bad_forward_inputs_raise():
    core = RIMs(5, RIMsConfig(num_units=3, k=2, unit_size=4), num_input_rows=2)
    good = torch.randn(3, 2, 2, 5)
    with pytest.raises(ValueError, match=r"shape \(3, 2, 2, 6\)"):
        core(torch.randn(3, 2, 2, 6))
    with pytest.raises(ValueError, match="R=3 rows"):
        core(torch.randn(3, 2, 3, 5))
    with pytest.raises(ValueError, match="episode_starts of shape"):
        core(good, None, torch.zeros(3, 3))
    with pytest.raises(ValueError, match="state"):
        core(good, (torch.zeros(2, 3, 4),))
    with pytest.raises(ValueError, match="batch_size=0"):
        core.initial_state(0)
