"""The fair study's tooling (benchmarks/studies/fair_runs.py): the grid from the tuning, publishing runs
without models or event files, the levelling-off check."""
import json
from pathlib import Path

import pytest
import yaml

from agents.experiments.curves import read_scalars, training_wall_seconds
from rims_rl.errors import UserError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def fair(load_script):
    return load_script("benchmarks/studies/fair_runs.py")


def _tuning(path: Path, trials: dict[str, int], schedule: str = "constant") -> Path:
    """A tuning env dir: trials.csv with ``trials[label]`` trials per label (the last one best, one failed),
    tuned.yaml with each label's best trial's values."""
    path.mkdir(parents=True)
    tuned = {label: {"ppo.learning_rate": 0.000123 * (i + 1), "ppo.lr_schedule": schedule}
             for i, label in enumerate(trials)}
    tuned["rims"]["cores.rims.k"] = 3
    lines = ["label,core,trial,score,seconds,ppo.learning_rate,ppo.lr_schedule,cores.rims.k"]
    for label, n in trials.items():
        for i in range(n):
            best = i == n - 1
            score = "" if i == 0 else f"{0.5 + i / 100}"  # trial 0 failed: it counts, with no score
            values = tuned[label] if best else {"ppo.learning_rate": 0.002, "ppo.lr_schedule": "linear"}
            k = values.get("cores.rims.k", 2 if label == "rims" else "")
            lines.append(f"{label},{label.split('-')[0]},{i},{score},10.0,{values['ppo.learning_rate']!r},"
                         f"{values['ppo.lr_schedule']},{k}")
    (path / "trials.csv").write_text("\n".join(lines) + "\n")
    (path / "tuned.yaml").write_text("# comment\n" + yaml.safe_dump(tuned))
    return path


LABELS = ("rims", "lstm", "lstm-matched", "gru", "none")
# the settings and episodes the fixture's runs (write_run: 20 episodes per setting) are evaluated with
LADDER = {"eval.sweep": "distractors=1 size=3", "eval.episodes": 20}


def _model(run: Path, steps: int, older: bool = True) -> None:
    """A model.zip holding only its step count, written before (``older``) or after the run's evaluation."""
    import os
    import zipfile

    with zipfile.ZipFile(run / "model.zip", "w") as archive:
        archive.writestr("data", json.dumps({"num_timesteps": steps}))
    evaluated = (run / "eval" / "results.json").stat().st_mtime
    when = evaluated - 60 if older else evaluated + 60
    os.utime(run / "model.zip", (when, when))


def test_grid_waits_for_every_labels_full_tuning_budget(fair, tmp_path):
    tuning = _tuning(tmp_path / "tuning", {**dict.fromkeys(LABELS, 16), "rims": 15})
    with pytest.raises(UserError, match=r"^the tuning is not finished: rims 15 of 16 trials$"):
        fair.write_grid(tuning, tmp_path / "fair.yaml")
    assert not (tmp_path / "fair.yaml").exists()


def test_grid_refuses_unequal_budgets_values_of_another_trial_and_a_value_the_sweep_refuses(fair, tmp_path):
    over = _tuning(tmp_path / "over", {**dict.fromkeys(LABELS, 16), "gru": 17})
    with pytest.raises(UserError, match="^unequal tuning budgets: gru has 17 trials, not 16$"):
        fair.write_grid(over, tmp_path / "fair.yaml")
    other = _tuning(tmp_path / "other", dict.fromkeys(LABELS, 16))
    tuned = yaml.safe_load((other / "tuned.yaml").read_text())
    tuned["lstm"]["ppo.learning_rate"] = 0.002  # a value of a worse trial
    (other / "tuned.yaml").write_text(yaml.safe_dump(tuned))
    with pytest.raises(UserError, match="lstm's values are not those of its best trial"):
        fair.write_grid(other, tmp_path / "fair.yaml")
    bad = _tuning(tmp_path / "bad", dict.fromkeys(LABELS, 16), schedule="sometimes")
    with pytest.raises(UserError, match="lr_schedule"):
        fair.write_grid(bad, tmp_path / "fair.yaml")
    assert sorted(p.name for p in tmp_path.glob("*fair.yaml*")) == []  # nothing written, nothing left


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
    pickup = next(t for t in grid["tasks"] if t["env"] == "PickupDistractors-v0")  # as tuned: the mission row
    assert pickup["timesteps"] == 300000 and pickup["labels"]["rims"]["set"]["policy_kwargs.instruction_row"] is True
    assert sorted(grid["labels"]) == sorted(LABELS) and grid["overrides"] == {"eval": {"episodes": 200}}
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
                        curve=(0.2, 0.5, 0.9 + 0.05 * seed), changes=LADDER)
        _model(run, steps=3000)  # the fixture's budget
    unfinished = write_run(logdir, "lstm", 0, {"none": 0.5, "distractors": 0.5, "size": 0.5},
                    changes=LADDER)  # no model.zip
    short = write_run(logdir, "gru", 0, {"none": 0.5, "distractors": 0.5, "size": 0.5},
                    changes=LADDER)
    _model(short, steps=2048)  # a model short of the budget (its evaluation is of an earlier, smaller budget)
    stale = write_run(logdir, "none", 0, {"none": 0.5, "distractors": 0.5, "size": 0.5},
                    changes=LADDER)
    _model(stale, steps=3000, older=False)  # trained again after its evaluation: not evaluated
    fewer = write_run(logdir, "rims", 2, {"none": 0.5, "distractors": 0.5, "size": 0.5},
                      changes={**LADDER, "eval.episodes": 200})
    _model(fewer, steps=3000)  # evaluated on 20 episodes where its config asks for 200
    out = tmp_path / "published"
    # a publish interrupted before its move leaves only a staging dir: not a published run, redone next time
    leftover = out / unfinished.relative_to(logdir).parent.parent / "rims" / ".seed1.publishing"
    (leftover / "eval").mkdir(parents=True)
    (leftover / "eval" / "results.json").write_text("{}")
    assert fair.published(out) == set()
    assert fair.publish(logdir, out) == 2
    assert not leftover.exists()
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
    for run in (unfinished, short, stale, fewer):
        assert not (out / run.relative_to(logdir)).exists()
    assert {label for _, label, _ in fair.published(out)} == {"rims"}
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


def test_published_runs_and_tuning_are_not_git_ignored_but_a_local_logdir_is():
    import shutil
    import subprocess

    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")

    def ignored(path: str) -> bool:
        return subprocess.run(["git", "-C", str(ROOT), "check-ignore", "-q", path]).returncode == 0

    assert not ignored("docs/results/fair/runs/PickupDistractors-v0/rims/seed0/config.yaml")
    assert not ignored("docs/results/fair/runs/PickupDistractors-v0/rims/seed0/curves.csv")
    assert not ignored("docs/results/fair/tuning/PickupDistractors-v0/tune.journal")
    assert ignored("runs/demo/RedBallDistractors-v0/rims/seed0/config.yaml")  # the default logdir stays out
    assert ignored("docs/results/fair/runs/compare/compare.json")  # the report's cache; its CSVs sit beside report.md


def test_compute_sums_the_tuning_and_published_runs_and_estimates_the_rest(fair, tmp_path, write_run):
    from torch.utils.tensorboard import SummaryWriter

    study = tmp_path / "study"
    _tuning(study / "tuning" / "PickupDistractors-v0", dict.fromkeys(LABELS, 16))  # 10 s per trial (2 runs)
    grid = tmp_path / "fair.yaml"
    before = fair.compute(study, grid)
    assert "| tuning, PickupDistractors-v0 (16 trials) | rims | 32 | 0.04 |" in before
    assert "| **spent** | | | **0.2** |" in before and "No study grid yet" in before  # 5 x 160 s
    fair.write_grid(study / "tuning" / "PickupDistractors-v0", grid)
    # no final run yet: each label's best trial, 5 s per run of 300k steps, times each task's budget x 10 seeds
    per_label = 10 * (5 + 2.5 + 5 * 400 / 300)
    assert fair.compute(study, grid).endswith(
        f"about {5 * per_label / 3600:.1f} CPU-hours, {5 * per_label / 3600 / 2:.1f} wall-clock hours at 2 runs "
        "at a time (evaluation not counted).")
    # a published pickup run of rims that trained for 900 s: the other 9 seeds of rims on pickup are taken at 900 s
    run = write_run(tmp_path / "logdir", "rims", 0, {"none": 0.9, "distractors": 0.8, "size": 0.6}, changes=LADDER)
    writer = SummaryWriter(str(run / "tb" / "train_1"))
    for step, wall in ((1000, 100.0), (3000, 1000.0)):
        writer.add_scalar("time/fps", 1e9, step, walltime=wall)  # the first rollout adds next to nothing
    writer.close()
    _model(run, steps=3000)
    assert fair.publish(tmp_path / "logdir", study / "runs") == 1
    (study / "runs" / run.parent.parent.name).rename(study / "runs" / "PickupDistractors-v0")
    after = fair.compute(study, grid)
    assert "| final runs, PickupDistractors-v0 | rims | 1 | 0.25 |" in after
    todo = 5 * per_label - 10 * 5 + 9 * 900
    assert f"about {todo / 3600:.1f} CPU-hours" in after


def test_fair_sh_runs_goes_on_past_a_failed_sweep_and_has_nothing_to_do_once_all_is_published(fair, tmp_path):
    import os
    import subprocess

    from agents.experiments.runs import env_dirname

    study = tmp_path / "study"
    grid = fair.write_grid(_tuning(study / "tuning" / "PickupDistractors-v0", dict.fromkeys(LABELS, 16)),
                           tmp_path / "fair.yaml")
    calls = tmp_path / "calls"
    stub = tmp_path / "rims-rl"  # records each sweep; the first one fails
    stub.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n[ "$(wc -l < {calls})" -gt 1 ]\n')
    stub.chmod(0o755)
    env = {**os.environ, "OUT": str(study), "GRID": str(grid), "RIMS_RL": str(stub), "LOGDIR": str(tmp_path / "logdir")}

    def runs() -> subprocess.CompletedProcess:
        return subprocess.run(["bash", str(ROOT / "benchmarks" / "studies" / "fair.sh"), "runs"], env=env,
                              capture_output=True, text=True, timeout=120)

    def report(**extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", str(ROOT / "benchmarks" / "studies" / "fair.sh"), "report"],
                              env={**env, **extra}, capture_output=True, text=True, timeout=120)

    refused = report()  # no run yet: no analysis to publish
    assert refused.returncode == 2 and not calls.exists() and not list(study.glob("*.md"))
    assert "fair.sh report: 15 (task, label) pairs" in refused.stderr and len(refused.stderr.splitlines()) == 1
    report(PARTIAL="1")  # a look at the runs so far, in a folder other than docs/results/fair
    assert calls.read_text().startswith(f"report {study}/runs --out {study} --study {grid}")
    assert report(PARTIAL="0").returncode == 2  # only PARTIAL=1 asks for it
    calls.unlink()
    # the published folder (PUBLISHED, docs/results/fair by default) gets no partial analysis, PARTIAL or not
    published = report(PARTIAL="1", PUBLISHED=str(study / "." / "runs" / ".."))
    assert published.returncode == 2 and "still lack runs" in published.stderr and not calls.exists()
    assert runs().returncode == 1
    swept = calls.read_text().splitlines()
    assert len(swept) == 15 and len({line.split(" --seed")[0] for line in swept}) == 15
    assert all(line.startswith(f"sweep {grid} --env ") and " --seed 0 1 2 3 4 5 6 7 8 9 --evaluate" in line
               for line in swept)
    for line in fair.missing(study / "runs", grid):  # every run published (the files published() looks for)
        env_id, label, *seeds = line.split()
        for seed in seeds:
            run = study / "runs" / env_dirname(env_id) / label / f"seed{seed}"
            (run / "eval").mkdir(parents=True)
            for name in ("config.yaml", "curves.csv", "eval/results.json"):
                (run / name).write_text("")
    calls.unlink()
    done = runs()
    assert done.returncode == 0 and not calls.exists(), done.stderr


def test_the_committed_study_grid_is_the_committed_tunings_best_values_with_a_parameter_matched_lstm(fair):
    """benchmarks/studies/fair.yaml, committed before the final runs, holds exactly what the committed tuning
    (16 finished trials per label) chose, and sizes lstm-matched against the grid's rims on every task."""
    from agents.experiments.sweep.grid import grid_jobs, job_configs, merge_grid, read_grid_file

    tuning = ROOT / "docs" / "results" / "fair" / "tuning" / "PickupDistractors-v0"
    committed = yaml.safe_load(fair.GRID.read_text())
    assert committed == yaml.safe_load(yaml.safe_dump(fair.study_grid(tuning), sort_keys=False))
    assert set(committed["labels"]) == set(LABELS) and committed["seeds"] == list(range(10))
    assert committed["primary"] == {"env": "PickupDistractors-v0", "shift": "novel_distractors", "level": 3,
                                    "labels": ["rims", "lstm"], "metric": "success_rate"}
    grid = merge_grid(read_grid_file(fair.GRID))
    for job in grid_jobs(grid):
        configs = {variant.label: cfg for variant, cfg in job_configs(grid, job)}
        assert configs["lstm-matched"]["cores"]["lstm"]["hidden_size"] == 134, job.env
        assert configs["lstm"]["cores"]["lstm"]["hidden_size"] == 192, job.env
        assert configs["rims"]["policy_kwargs"]["input_rows"] is True, job.env
        assert configs["rims"]["policy_kwargs"].get("instruction_row", False) is (job.env == "PickupDistractors-v0")


def test_the_fair_study_claims_no_result_until_every_run_is_published_and_then_quotes_the_generated_answer(
        fair, load_script):
    """While runs are missing, docs/results/fair holds no analysis and its README says there is no result; once
    all 150 are published, both READMEs quote the generated primary answer verbatim (from the committed CSVs),
    and the main README the generated findings in words."""
    from agents.experiments.findings import primary_answer, read_primary

    study = ROOT / "docs" / "results" / "fair"
    readmes = {path: " ".join(path.read_text().split()) for path in (study / "README.md", ROOT / "README.md")}
    if fair.missing(study / "runs", fair.GRID):
        assert "No result yet" in readmes[study / "README.md"]
        assert not any((study / name).exists() for name in ("compare.csv", "improvement.csv", "report.md",
                                                            "findings.md", "in-words.md", "runs/compare"))
        assert not any("Primary hypothesis, rims beats lstm" in text for text in readmes.values())
        return
    findings = load_script("benchmarks/studies/findings.py")
    tables, primary = findings.read_tables(study), read_primary(fair.GRID)
    answer = primary_answer(tables, primary)
    assert "no verdict" not in answer and "No result yet" not in readmes[study / "README.md"]
    for path, text in readmes.items():
        assert answer in text, f"{path} does not quote the generated primary answer"
    # the main README's Findings: the generated text in words, primary first, and the tally of leads
    assert " ".join(findings.in_words(tables, primary).split()) in readmes[ROOT / "README.md"]


def test_parameters_counts_the_core_that_matching_sizes_and_the_whole_policy_beside_it(fair):
    """The committed grid: lstm-matched's core within 5% of rims's on every task, while its whole policy (the
    encoder before the core differs: rims reads the feature map's rows) is far larger; the table says both."""
    rows = [line.strip("|").split(" | ") for line in fair.parameters(fair.GRID).splitlines()[2:]]
    counts = {(env.strip(), label): (int(core.replace(",", "")), int(total.replace(",", "")), ratio.strip())
              for env, label, _, core, total, ratio in rows}
    assert len(counts) == 15
    for env in ("PickupDistractors-v0", "MiniGrid-DoorKey-5x5-v0", "MemoryDistractors-v0"):
        rims, matched, none = counts[env, "rims"], counts[env, "lstm-matched"], counts[env, "none"]
        assert abs(matched[0] / rims[0] - 1) < 0.05 and none[0] == 0 and rims[2] == "1.00"
        assert matched[1] > 1.4 * rims[1] and matched[2] == f"{matched[1] / rims[1]:.2f}"
    assert counts["PickupDistractors-v0", "lstm-matched"][0] == 141_504  # the 134 units PLAN.md names


def test_resumed_names_each_published_run_trained_by_more_than_one_process(fair, tmp_path):
    import shutil

    published = ROOT / "docs" / "results" / "fair" / "runs" / "PickupDistractors-v0"
    out = tmp_path / "runs" / "PickupDistractors-v0"
    shutil.copytree(published / "lstm" / "seed0", out / "lstm" / "seed0")  # one process
    assert fair.resumed(tmp_path / "runs") == "Every published run trained in one process."
    once = out / "lstm" / "seed1"
    shutil.copytree(published / "lstm" / "seed0", once)
    header, *rows = (once / "curves.csv").read_text().splitlines()  # the same run, resumed: from 150k by process 1
    later = [int(row.split(",")[2]) >= 150_000 for row in rows]
    step = min(int(row.split(",")[2]) for row, late in zip(rows, later) if late)
    (once / "curves.csv").write_text("\n".join([header] + [f"1{row[1:]}" if late else row
                                                           for row, late in zip(rows, later)]) + "\n")
    # resumed from the checkpoint one rollout (8 envs x 128 steps) before the second log's first step
    assert fair.resumed(tmp_path / "runs").splitlines()[2:] == [f"| PickupDistractors-v0 | lstm | 0 | {step - 1024:,} |"]
    (out / "lstm" / "seed0" / "curves.csv").unlink()  # no training log: whether it was resumed is not known
    assert fair.resumed(tmp_path / "runs").splitlines()[2:] == [f"| PickupDistractors-v0 | lstm | 0 | {step - 1024:,} |",
                                                               "| PickupDistractors-v0 | lstm | 0 | no training log |"]


def test_the_fair_study_readme_lists_every_published_run_that_was_resumed(fair):
    study = ROOT / "docs" / "results" / "fair"
    section = (study / "README.md").read_text().split("## Runs interrupted and resumed\n", 1)[1].split("\n## ")[0]
    table = [line for line in fair.resumed(study / "runs").splitlines() if line.startswith("|")]  # none: no table
    assert [line for line in section.splitlines() if line.startswith("|")] == table
