"""Shortened memory benchmark: an LSTM core recalls a cue after a delay, a feed-forward policy cannot."""
import pytest


@pytest.fixture(scope="module")
def bench(load_script):
    """benchmarks/learn_memory.py, loaded as a module."""
    return load_script("benchmarks/learn_memory.py")


def test_cue_recall_env_scores_the_query_step(bench):
    env = bench.CueRecall(delay=2)
    obs, _ = env.reset(seed=3)
    cue = int(obs[:2].argmax())
    assert obs[:2].sum() == 1.0
    for _ in range(2):
        obs, reward, done, _, _ = env.step(0)
        assert obs.tolist() == [0.0, 0.0, 1.0, 0.0] and reward == 0.0 and not done
    obs, reward, done, _, _ = env.step(0)
    assert obs[3] == 1.0 and reward == 0.0 and not done
    _, reward, done, _, _ = env.step(cue)
    assert reward == 1.0 and done
    with pytest.raises(ValueError, match="delay"):
        bench.CueRecall(delay=0)


def test_lstm_remembers_the_cue_and_feed_forward_cannot(bench):
    lstm_return, _ = bench.train("lstm", steps=12_000, seed=0, delay=4)
    none_return, _ = bench.train("none", steps=12_000, seed=0, delay=4)
    assert lstm_return >= bench.THRESHOLD
    assert none_return < 0.5  # chance level is 0
