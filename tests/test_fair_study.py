"""The fair study's tooling (benchmarks/studies/fair_runs.py): the grid from the tuning, publishing runs
without models or event files, the levelling-off check."""
import importlib.util
import json
from pathlib import Path

import pytest
import yaml

from agents.experiments.curves import read_scalars, training_wall_seconds
from rims_rl.errors import UserError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def fair():
    spec = importlib.util.spec_from_file_location("fair_runs", ROOT / "benchmarks" / "studies" / "fair_runs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _tuning(path: Path, trials: dict[str, int]) -> Path:
    """A tuning env dir: trials.csv with ``trials[label]`` rows per label, tuned.yaml with values per label."""
    path.mkdir(parents=True)
    lines = ["label,core,trial,score,seconds,ppo.learning_rate,cores.rims.k"]
    for label, n in trials.items():
        lines += [f"{label},{label.split('-')[0]},{i},{0.5 + i / 100},10.0,0.001," for i in range(n)]
    (path / "trials.csv").write_text("\n".join(lines) + "\n")
    tuned = {label: {"ppo.learning_rate": 0.000123 * (i + 1), "ppo.lr_schedule": "constant"}
             for i, label in enumerate(trials)}
    tuned["rims"]["cores.rims.k"] = 3
    (path / "tuned.yaml").write_text("# comment\n" + yaml.safe_dump(tuned))
    return path


LABELS = ("rims", "lstm", "lstm-matched", "gru", "none")


def test_grid_waits_for_every_labels_full_tuning_budget(fair, tmp_path):
    tuning = _tuning(tmp_path / "tuning", {**dict.fromkeys(LABELS, 16), "rims": 15})
    with pytest.raises(UserError, match=r"^the tuning is not finished: rims 15 of 16 trials$"):
        fair.write_grid(tuning, tmp_path / "fair.yaml")
    assert not (tmp_path / "fair.yaml").exists()


def test_grid_copies_the_tuned_values_verbatim_and_plans_every_run(fair, tmp_path):
    tuning = _tuning(tmp_path / "tuning", dict.fromkeys(LABELS, 16))
    path = fair.write_grid(tuning, tmp_path / "fair.yaml")
    grid = yaml.safe_load(path.read_text())
    tuned = yaml.safe_load((tuning / "tuned.yaml").read_text())
    for label in LABELS:
        for key, value in tuned[label].items():
            assert grid["labels"][label]["set"][key] == value
    assert grid["labels"]["rims"]["set"]["policy_kwargs.input_rows"] is True
    assert grid["labels"]["lstm-matched"]["set"]["match"] == "params"
    assert grid["primary"]["labels"] == ["rims", "lstm"] and grid["seeds"] == list(range(10))
    # the sweep's own planning accepts it: 3 tasks x 5 labels, seeds 0-9 missing before any run
    lines = fair.missing(tmp_path / "published", path)
    assert len(lines) == 15 and all(line.endswith(" 0 1 2 3 4 5 6 7 8 9") for line in lines)
    assert {line.split()[0] for line in lines} == {"PickupDistractors-v0", "MiniGrid-DoorKey-5x5-v0",
                                                   "MemoryDistractors-v0"}
    with pytest.raises(UserError, match="exists; the study grid is written once"):
        fair.write_grid(tuning, path)


def test_published_runs_regenerate_curves_and_scores_without_models(fair, tmp_path, write_run, run_main):
    logdir = tmp_path / "runs"
    for seed in (0, 1):
        run = write_run(logdir, "rims", seed, {"none": 0.9, "distractors": 0.8, "size": 0.6},
                        curve=(0.2, 0.5, 0.9 + 0.05 * seed))
        (run / "model.zip").write_bytes(b"model")
    unfinished = write_run(logdir, "lstm", 0, {"none": 0.5, "distractors": 0.5, "size": 0.5})  # no model.zip
    out = tmp_path / "published"
    assert fair.publish(logdir, out) == 2
    published = sorted(out.glob("*/*/seed*"))
    assert [p.name for p in published] == ["seed0", "seed1"]
    for run in published:
        assert sorted(p.name for p in run.iterdir()) == ["config.yaml", "curves.csv", "eval"]
        original = logdir / run.relative_to(out)
        assert read_scalars(run)["rollout/ep_rew_mean"][1].tolist() == \
            read_scalars(original)["rollout/ep_rew_mean"][1].tolist()
        assert training_wall_seconds(run, 100) == training_wall_seconds(original, 100)
        data = json.loads((run / "eval" / "results.json").read_text())
        assert all("episode_records" not in r for r in data["results"])
    assert not (out / unfinished.relative_to(logdir)).exists()
    # the levelling-off check reads the published curves: the rise over the last 20% of training
    rows = fair.levelled(out)
    assert len(rows) == 1 and rows[0]["label"] == "rims" and rows[0]["runs"] == 2
    # curves (0.2, 0.5, x) at steps 1000, 2000, 3000 (+0.01 x seed): 2400 is 0.4 of the way to x
    ends = [0.9 + 0.05 * s + 0.01 * s for s in (0, 1)]
    starts = [0.5 + 0.01 * s + 0.4 * (end - 0.5 - 0.01 * s) for s, end in zip((0, 1), ends)]
    assert rows[0]["iqm_to"] == pytest.approx(sum(ends) / 2) and rows[0]["iqm_from"] == pytest.approx(sum(starts) / 2)
    assert rows[0]["levelled"] is False and "| no |" in fair.levelled_table(rows)
    # and the report regenerates from the published runs alone, learning curves included
    assert run_main(["report", out, "--out", tmp_path / "report", "--reps", 20]) == 0
    assert (tmp_path / "report" / "report_curves.png").is_file()
    assert "](report_curves.png)" in (tmp_path / "report" / "report.md").read_text()
