"""tune: the search space, Optuna's journal storage, interrupted trials, equal budgets, outputs."""
import csv

import optuna
import pytest
import yaml

from agents.experiments.tune import space as tune_space, storage as tune
from agents.experiments.config import load_config
from rims_rl.errors import UserError


@pytest.fixture
def base():
    return load_config("demo")


def _space(tmp_path, text):
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return path


def test_the_default_space_is_valid_and_core_keys_apply_to_their_core(base):
    space = tune_space.read_space(None, base)
    keys = [p.key for p in space]
    for key in ("ppo.learning_rate", "ppo.lr_schedule", "ppo.ent_coef", "ppo.n_epochs", "ppo.clip_range",
                "ppo.bptt_length", "cores.rims.k"):
        assert key in keys
    assert [p.key for p in tune_space.space_for(space, "lstm")] == keys[:-1]
    assert tune_space.space_for(space, "rims")[-1].key == "cores.rims.k"
    lr = next(p for p in space if p.key == "ppo.learning_rate")
    assert lr.log and not lr.is_int and next(p for p in space if p.key == "ppo.n_epochs").is_int


@pytest.mark.parametrize("text, message", [
    ("", "is empty"),
    ("ppo.learning_rat: {low: 1e-4, high: 1e-3}", "unknown config key 'ppo.learning_rat'"),
    ("ppo.learning_rate: {low: 1e-3, high: 1e-4}", "low must be below high"),
    ("ppo.learning_rate: {low: 0, high: 1e-3, log: true}", "a log range needs low > 0"),
    ("ppo.learning_rate: {low: x, high: 1e-3}", "low and high must be numbers"),
    ("ppo.learning_rate: {high: 1e-3}", "needs low and high"),
    ("ppo.learning_rate: 0.001", "must be {low, high[, log]} or {choices: [...]}"),
    ("ppo.lr_schedule: {choices: []}", "choices must be a non-empty list"),
    ("ppo.lr_schedule: {choices: [constant, constant]}", "choices repeat a value"),
    ("ppo.lr_schedule: {choices: [constant], low: 1, high: 2}", "give choices alone"),
    ("ppo.n_epochs: {low: 1, high: 4, step: 2}", "unknown field 'step'"),
    ("ppo.n_epochs: {choices: [2, many]}", "ppo.n_epochs expects an integer"),
    ("cores.lstm.hidden_size: {low: 0.5, high: 64.5}", "cores.lstm.hidden_size expects an integer"),
    ("[1, 2]", "is empty"),
    ("a: [", "is not valid YAML"),
])
def test_space_errors_name_the_key_and_the_problem(tmp_path, base, text, message):
    with pytest.raises(UserError, match=message.replace("[", r"\[").replace("{", r"\{")):
        tune_space.read_space(_space(tmp_path, text), base)


def test_an_unreadable_space_file_is_a_user_error(tmp_path, base):
    with pytest.raises(UserError, match="cannot read space file"):
        tune_space.read_space(tmp_path / "missing.yaml", base)


def test_tuning_seeds_start_at_1000_and_never_overlap_the_reported_seeds():
    assert tune.tuning_seeds(3) == [1000, 1001, 1002]
    assert min(tune.tuning_seeds(16)) > 999


def _study(tmp_path, label="rims", seed=0):
    return tune.open_study(tune.journal_storage(tmp_path), "E-v0", label, seed=seed)


def test_interrupted_trials_are_requeued_with_their_run_dirs_and_never_counted_twice(tmp_path, base):
    space = tune_space.space_for(tune_space.read_space(None, base), "rims")
    study = _study(tmp_path)
    done, params, key = tune.ask(study, space)
    study.tell(done, 0.5)
    left, left_params, left_key = tune.ask(study, space)  # the driver dies while this trial runs
    assert left_key == "trial001"
    study = _study(tmp_path)  # a new driver process opens the same journal
    assert tune.recover_interrupted(study) == 1
    assert [t.number for t in tune.finished_trials(study)] == [0]  # the interrupted one does not count
    again, again_params, again_key = tune.ask(study, space)
    assert again_params == left_params and again_key == "trial001"  # same parameters, same run dirs
    study.tell(again, 0.7)
    failed, _, _ = tune.ask(study, space)
    failed.set_user_attr(tune.FAILED_RUNS, "diverged")
    study.tell(failed, state=optuna.trial.TrialState.FAIL)  # failed by its runs: budget spent, counted
    assert [t.number for t in tune.finished_trials(tune.open_study(tune.journal_storage(tmp_path), "E-v0", "rims"))] \
        == [0, 2, 3]
    assert tune.recover_interrupted(study) == 0
    assert tune.best_trial(study).value == 0.7


def test_a_journal_record_cut_off_by_a_kill_is_dropped_and_the_tune_continues(tmp_path, base, capsys):
    space = tune_space.space_for(tune_space.read_space(None, base), "rims")
    study = _study(tmp_path)
    done, _, _ = tune.ask(study, space)
    study.tell(done, 0.5)
    running, _, _ = tune.ask(study, space)  # the kill comes while this trial's "complete" is written
    journal = tmp_path / tune.JOURNAL
    with open(journal, "ab") as f:
        f.write(b'{"op_code": 6, "worker_id": "x", "trial_id": 1, "sta')
    study = _study(tmp_path)  # a new driver: without the repair Optuna glues the next record to the cut one
    assert "dropped the incomplete last record" in capsys.readouterr().err
    assert journal.read_bytes().endswith(b"\n")
    assert tune.recover_interrupted(study) == 1  # the cut-off operation never took effect
    again, _, _ = tune.ask(study, space)
    study.tell(again, 0.7)
    reopened = _study(tmp_path)
    assert [t.value for t in tune.finished_trials(reopened)] == [0.5, 0.7]
    assert not tune.repair_journal(journal) and not tune.repair_journal(tmp_path / "absent.journal")


def test_labels_have_their_own_studies_in_one_journal(tmp_path, base):
    space = tune_space.read_space(None, base)
    rims, lstm = _study(tmp_path, "rims", 1), _study(tmp_path, "lstm", 2)
    trial, _, _ = tune.ask(rims, tune_space.space_for(space, "rims"))
    rims.tell(trial, 1.0)
    assert len(tune.finished_trials(rims)) == 1 and tune.finished_trials(lstm) == []
    assert (tmp_path / tune.JOURNAL).is_file()
    with pytest.raises(UserError, match="--sampler must be tpe or random"):
        tune.open_study(tune.journal_storage(tmp_path), "E-v0", "gru", sampler="grid")


def test_trials_csv_and_best_config(tmp_path, base):
    space = tune_space.read_space(None, base)
    study = _study(tmp_path)
    for score in (0.2, 0.9, 0.4):
        trial, params, _ = tune.ask(study, tune_space.space_for(space, "rims"))
        trial.set_user_attr("seconds", 12.34)
        study.tell(trial, score)
    rows = tune.trial_rows({"rims": study}, {"rims": "rims"}, space)
    path = tune.write_trials(tmp_path, rows, space)
    with open(path) as f:
        read = list(csv.DictReader(f))
    assert list(read[0])[:5] == ["label", "core", "trial", "score", "seconds"]
    assert "ppo.learning_rate" in read[0] and "cores.rims.k" in read[0]
    assert [float(r["score"]) for r in read] == [0.2, 0.9, 0.4] and read[0]["seconds"] == "12.3"
    best = tune.best_trial(study)
    assert best.number == 1
    cfg_path = tune.write_best_config(tmp_path, "rims", base, dict(best.params), "demo")
    written = yaml.safe_load(cfg_path.read_text())
    assert written["base"] == "demo" and written["seed"] == 0
    assert written["ppo"]["learning_rate"] == pytest.approx(best.params["ppo.learning_rate"])
    resolved = load_config(str(cfg_path))  # what `rims-rl train --config best_rims.yaml` reads
    assert resolved["cores"]["rims"]["k"] == best.params["cores.rims.k"]


def test_a_best_config_of_a_parameter_matched_label_keeps_the_width_its_trials_had(tmp_path, base):
    """A matched label's trials were sized against the tuned grid's rims (input rows and all); its best config,
    run alone, keeps that width instead of matching against a rims made from its own config."""
    from agents.experiments.matching import matched_config

    cfg = {**base, "env": "RedBallDistractors-v0", "core": "lstm", "label": "lstm-matched", "match": "params",
           "cores": {**base["cores"], "lstm": {"hidden_size": 37}}}  # 37: what the grid's matching gave
    path = tune.write_best_config(tmp_path, "lstm-matched", cfg, {"ppo.learning_rate": 0.001}, "demo")
    text = path.read_text()
    assert "# match: params against the tuned grid's rims gave hidden_size 37, kept as it is" in text
    resolved = load_config(str(path))
    assert resolved["match"] == "none" and matched_config(resolved)["cores"]["lstm"]["hidden_size"] == 37
    assert matched_config({**resolved, "match": "params"})["cores"]["lstm"]["hidden_size"] != 37  # what it was
    plain = tune.write_best_config(tmp_path, "lstm", {**base, "core": "lstm"}, {}, "demo")
    assert "match: params" not in plain.read_text() and "kept as it is" not in plain.read_text()


def test_a_reopened_study_draws_new_values_instead_of_repeating_its_start(tmp_path, base):
    space = tune_space.space_for(tune_space.read_space(None, base), "lstm")
    first = _study(tmp_path)
    drawn = []
    for _ in range(2):
        trial, params, _ = tune.ask(first, space)
        first.tell(trial, 0.5)
        drawn.append(params)
    reopened = _study(tmp_path)  # a re-run of the same command: the same sampler seed
    _, params, _ = tune.ask(reopened, space)
    assert params not in drawn  # TPE's random start-up continues rather than restarting
    with pytest.raises(UserError, match="--sampler must be tpe or random"):
        tune.open_study(tune.journal_storage(tmp_path), "E-v0", "x", sampler="grid")


def _tune_files(path, rows, tuned):
    """A tune's env dir written by hand: trials.csv with ``rows`` (label, score, k, clip_range_vf), tuned.yaml."""
    path.mkdir(parents=True, exist_ok=True)
    lines = ["label,core,trial,score,seconds,cores.rims.k,ppo.clip_range_vf"]
    counts = {}
    for label, score, k, clip in rows:
        counts[label] = counts.get(label, -1) + 1
        lines.append(f"{label},{label},{counts[label]},{score},1.0,{k},{clip}")
    (path / "trials.csv").write_text("\n".join(lines) + "\n")
    (path / "tuned.yaml").write_text(yaml.safe_dump(tuned))
    return path


@pytest.mark.parametrize("rows, tuned, message", [
    # a value that is None (a null choice) is an empty cell: accepted
    ([("rims", 0.5, 2, 0.2), ("rims", 0.9, 3, ""), ("lstm", 0.4, "", 0.1), ("lstm", 0.3, "", "")],
     {"rims": {"cores.rims.k": 3, "ppo.clip_range_vf": None}, "lstm": {"ppo.clip_range_vf": 0.1}}, None),
    # a label with fewer trials, present in trials.csv only
    ([("rims", 0.5, 2, ""), ("rims", 0.9, 3, ""), ("gru", 0.4, "", "")], {"rims": {"cores.rims.k": 3}},
     "unequal tuning budgets in .*: rims 2, gru 1 trials"),
    # a tuned label that trials.csv lacks
    ([("rims", 0.9, 3, "")], {"rims": {"cores.rims.k": 3}, "lstm": {"ppo.clip_range_vf": 0.1}},
     "unequal tuning budgets in .*: rims 1, lstm 0 trials"),
    # values missing a searched key of the best trial, or none at all
    ([("rims", 0.9, 3, 0.2)], {"rims": {"cores.rims.k": 3}}, "rims's values are not those of its best trial"),
    ([("rims", 0.9, 3, "")], {"rims": {}}, "rims's values are not those of its best trial"),
    # a key the tune never searched
    ([("rims", 0.9, 3, "")], {"rims": {"cores.rims.k": 3, "ppo.gamma": 0.9}}, "not those of its best trial"),
])
def test_read_tuned_holds_values_to_the_best_trial_and_budgets_to_every_label(tmp_path, rows, tuned, message):
    from agents.experiments.tune.tuned import read_tuned

    path = _tune_files(tmp_path / "env", rows, tuned)
    if message is None:
        got = read_tuned(path)
        assert got.values == tuned and got.cores == {"rims": "rims", "lstm": "lstm"}
    else:
        with pytest.raises(UserError, match=message):
            read_tuned(path)
