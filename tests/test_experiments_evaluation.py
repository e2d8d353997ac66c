"""Evaluation metrics: success, normalized score, paired episode seeds, the cached random baseline, files."""
import json

import numpy as np
import pytest

from agents.experiments.baseline import RandomPolicy, random_baseline
from agents.experiments.evaluation.episodes import Episode, _run_waves, run_episodes
from agents.experiments.evaluation.ladder import Setting, scale_changing
from agents.experiments.evaluation.metrics import add_normalized_scores, normalized_score, summarize, wilson_interval
from agents.experiments.evaluation.results import RESULT_COLUMNS, write_results
from envs import DEFAULT_ENV_ID, make_vec_env


def _episodes(returns, successes=None):
    successes = successes or [None] * len(returns)
    return [Episode(i, 100 + i, r, s, 10 + i) for i, (r, s) in enumerate(zip(returns, successes))]


def test_success_rate_and_return_statistics_from_hand_made_episodes():
    r = summarize("E", Setting("none", 0), _episodes([1.0, 0.0, 3.0, 0.0], [True, False, True, False]))
    assert r.mean_return == 1.0 and r.std_return == pytest.approx(np.std([1, 0, 3, 0], ddof=1))
    # t(0.975, 3) = 3.182: half width = 3.182 * std / sqrt(4)
    assert r.ci95_high - r.mean_return == pytest.approx(3.1824 * r.std_return / 2, rel=1e-3)
    assert r.success_rate == 0.5 and r.mean_length == 11.5
    assert r.success_ci95_low < 0.5 < r.success_ci95_high
    assert [e["seed"] for e in r.episode_records] == [100, 101, 102, 103]
    atari = summarize("ALE/Pong-v5", Setting("none", 0), _episodes([-21.0, -15.0]))
    assert atari.success_rate is None and atari.success_ci95_low is None  # no success notion


def test_wilson_interval_matches_the_formula_and_shrinks_to_0_05_at_400_episodes():
    low, high = wilson_interval(200, 400)
    assert (high - low) / 2 == pytest.approx(0.0488, abs=5e-4)  # the default episode count's half-width
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == pytest.approx(1.0)
    assert wilson_interval(0, 10)[1] == pytest.approx(0.2775, abs=1e-3)  # z^2/(n+z^2) for 0 successes


def test_normalized_score_uses_the_random_baseline_and_handles_negative_returns():
    # Pong-like: random -21, trained -15 unshifted, -18 shifted -> halfway to chance = 0.5 (a raw-return
    # ratio would read (-18)/(-15) = 1.2, "better than unshifted")
    assert normalized_score(-18.0, -21.0, -15.0, -21.0) == pytest.approx(0.5)
    assert normalized_score(0.5, 0.5, 0.8, 0.4) == pytest.approx(0.0)  # chance level in the shifted setting
    assert normalized_score(0.3, 0.1, 0.4, 0.45) is None  # no better than random unshifted: undefined
    results = [summarize("E", Setting("none", 0), _episodes([0.8, 0.8])),
               summarize("E", Setting("size", 3, {"size": 3}), _episodes([0.5, 0.5]))]
    results[0].random_return, results[1].random_return = 0.4, 0.3
    add_normalized_scores(results)
    assert results[0].normalized_score == pytest.approx(1.0)
    assert results[1].normalized_score == pytest.approx((0.5 - 0.3) / (0.8 - 0.4))


def test_results_files_have_the_documented_columns(tmp_path):
    r = summarize("E", Setting("none", 0), _episodes([1.0, 3.0], [True, False]))
    csv_path, json_path = write_results([r], tmp_path, {"model": "m"})
    header = csv_path.read_text().splitlines()[0].split(",")
    assert header == list(RESULT_COLUMNS)
    assert {"success_rate", "normalized_score"} <= set(header)
    atari = summarize("ALE/Pong-v5", Setting("none", 0), _episodes([1.0]))
    csv_path, _ = write_results([atari], tmp_path / "a", {})
    row = dict(zip(header, csv_path.read_text().splitlines()[1].split(",")))
    assert row["success_rate"] == "" and row["normalized_score"] == ""  # empty where undefined
    data = json.loads(json_path.read_text())
    assert data["results"][0]["episode_records"][1] == {"index": 1, "seed": 101, "return": 3.0, "success": False,
                                                        "length": 11}


def test_size_is_flagged_as_scale_changing():
    assert scale_changing(DEFAULT_ENV_ID, "size") and scale_changing(DEFAULT_ENV_ID, "distractors=1,size=2")
    assert not scale_changing(DEFAULT_ENV_ID, "distractors") and not scale_changing(DEFAULT_ENV_ID, "floor_noise")


class _Recorder:
    """A policy that records the first observation of every episode it plays (``turn`` = always turn left:
    episodes time out; otherwise random actions: episodes end at different steps)."""

    def __init__(self, turn, seed=0):
        self.turn, self.rng, self.starts = turn, np.random.default_rng(seed), []

    def predict(self, obs, state=None, episode_start=None, deterministic=False):
        for i in np.flatnonzero(episode_start):
            self.starts.append(obs[i].tobytes())
        n = len(episode_start)
        return (np.zeros(n, dtype=int) if self.turn else self.rng.integers(0, 3, n)), None


def _first_obs(seed, shifts):
    venv = make_vec_env(DEFAULT_ENV_ID, 1, seed=seed, shifts=shifts, training=False)
    obs = venv.reset()[0].tobytes()
    venv.close()
    return obs


@pytest.mark.parametrize("shifts", [None, {"floor_noise": 3}])
def test_two_models_meet_the_same_initial_layouts_in_the_same_episode_order(shifts):
    episodes, seed = 12, 500
    a, b = _Recorder(turn=True), _Recorder(turn=False)
    found_a = run_episodes(a, DEFAULT_ENV_ID, shifts, episodes, seed=seed, n_envs=5)
    found_b = run_episodes(b, DEFAULT_ENV_ID, shifts, episodes, seed=seed, n_envs=3)
    assert [(e.index, e.seed) for e in found_a] == [(e.index, e.seed) for e in found_b] == \
        [(i, seed + i) for i in range(episodes)]
    assert [e.length for e in found_a] != [e.length for e in found_b]  # really different play, other slot timing
    expected = [_first_obs(e.seed, shifts) for e in found_a]
    assert len(set(expected)) > episodes // 2  # the seeds give different layouts: the check is not vacuous
    for model in (a, b):  # each episode index started from its seed's layout, whichever sub-env ran it
        assert all(layout in model.starts for layout in expected)


def test_exactly_the_requested_episodes_are_kept_in_index_order():
    found = run_episodes(_Recorder(turn=False), DEFAULT_ENV_ID, None, 7, seed=3, n_envs=4)
    assert [e.index for e in found] == list(range(7)) and all(e.success in (True, False) for e in found)
    assert all((e.ret > 0) == e.success for e in found)  # MiniGrid: success = ended with a positive reward


def test_waves_seed_episode_i_with_seed_plus_i():
    venv = make_vec_env(DEFAULT_ENV_ID, 3, seed=0, training=False)
    model = _Recorder(turn=False)
    try:
        found = _run_waves(model, venv, 5, 40, False, None, True)
    finally:
        venv.close()
    assert sorted(found) == list(range(5)) and found[4].seed == 44
    assert all(_first_obs(found[i].seed, None) in model.starts for i in range(5))


def test_random_baseline_is_cached_and_reused(tmp_path, monkeypatch):
    import agents.experiments.baseline as baseline

    cache = tmp_path / "RedBall" / "random_baseline.json"
    setting = Setting("distractors", 1, {"distractors": 1})
    first = random_baseline(DEFAULT_ENV_ID, setting, 20, 7, cache, n_envs=4)
    assert first["cached"] is False and first["episodes"] == 20 and 0 < first["success_rate"] < 1
    stored = json.loads(cache.read_text())
    assert stored["entries"]["distractors=1|seed=7|episodes=20"]["episodes"] == 20

    def no_play(*args, **kwargs):
        raise AssertionError("the cached baseline was played again")

    monkeypatch.setattr(baseline, "run_episodes", no_play)
    again = random_baseline(DEFAULT_ENV_ID, setting, 20, 7, cache, n_envs=4)
    assert again["cached"] is True and again["mean_return"] == first["mean_return"]
    with pytest.raises(AssertionError, match="played again"):  # another episode count is another entry
        random_baseline(DEFAULT_ENV_ID, setting, 30, 7, cache, n_envs=4)


def test_random_policy_samples_valid_actions_reproducibly():
    from gymnasium import spaces

    a = RandomPolicy(spaces.Discrete(3), seed=1).predict(None, episode_start=np.ones(50, bool))[0]
    b = RandomPolicy(spaces.Discrete(3), seed=1).predict(None, episode_start=np.ones(50, bool))[0]
    assert a.shape == (50,) and set(a) <= {0, 1, 2} and (a == b).all()


def test_cli_defaults_are_the_evaluation_defaults():
    from agents.experiments.config import DEFAULT_EPISODES
    from agents.experiments.evaluation.episodes import EVAL_ENVS
    from train_agent import build_parser

    args = build_parser().parse_args(["evaluate", "--model", "m"])
    assert args.n_envs == EVAL_ENVS and args.episodes == DEFAULT_EPISODES == 400


def test_results_of_an_older_version_are_a_one_line_user_error(tmp_path, capsys, run_main, demo_run_config):
    import yaml


    run = tmp_path / "E" / "rims" / "seed0"
    (run / "eval").mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(demo_run_config("rims", 0)))
    (run / "eval" / "results.json").write_text('{"results": [{"shift": "none", "level": 0, "mean_return": 0.5}]}')
    assert run_main(["compare", tmp_path, "--out", tmp_path / "cmp"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "older rims-rl" in err and "rims-rl evaluate" in err
    assert not (tmp_path / "cmp").exists()  # nothing written


def test_paired_seeds_hold_below_a_vec_env_wrapper(monkeypatch):
    """An observation adapter around the DummyVecEnv (as Dict-observation envs may get) keeps the pairing."""
    from stable_baselines3.common.vec_env import VecEnvWrapper

    class Passthrough(VecEnvWrapper):
        def reset(self):
            return self.venv.reset()

        def step_wait(self):
            return self.venv.step_wait()

    from agents.experiments.evaluation import episodes

    real = episodes.make_vec_env
    monkeypatch.setattr(episodes, "make_vec_env", lambda *a, **k: Passthrough(real(*a, **k)))
    monkeypatch.setattr(episodes, "_run_waves", None)  # the per-episode reseeding path must be taken
    model = _Recorder(turn=False)
    found = run_episodes(model, DEFAULT_ENV_ID, None, 6, seed=70, n_envs=4)
    assert [e.seed for e in found] == list(range(70, 76))
    assert all(_first_obs(e.seed, None) in model.starts for e in found)


def test_the_baseline_cache_lies_beside_the_env_runs_or_in_the_output_dir(tmp_path, trained_run, monkeypatch, run_main):
    """A run dir outside ``<logdir>/<env>/<core>/seed<N>`` never writes into the dir two levels above it."""
    import shutil

    standard = tmp_path / "runs" / trained_run.parent.parent.name / "lstm" / "seed0"
    shutil.copytree(trained_run, standard)
    assert run_main(["evaluate", "--model", standard, "--shifts", "none", "--episodes", 1]) == 0
    assert (standard.parent.parent / "random_baseline.json").is_file()

    elsewhere = tmp_path / "a" / "b" / "myrun"
    shutil.copytree(trained_run, elsewhere)
    monkeypatch.chdir(elsewhere)
    assert run_main(["evaluate", "--model", ".", "--shifts", "none", "--episodes", 1]) == 0
    assert (elsewhere / "eval" / "random_baseline.json").is_file()
    assert not list((tmp_path / "a").glob("random_baseline.json*")) and not list(elsewhere.glob("random_baseline*"))
