"""report: a self-contained HTML page and a Markdown twin holding compare.csv's numbers; learning curves."""
import base64
import csv
import json
import io
import re

import imageio.v3 as iio
import numpy as np
import pytest
import yaml

from agents.experiments.curves import learning_curves
from agents.experiments.evaluation.tables import format_number
from agents.experiments.runs import find_run_dirs


@pytest.fixture(scope="module")
def study(tmp_path_factory, write_run, run_main):
    """Two cores x two seeds, evaluated; lstm clearly undertrained unshifted (0.4 vs 0.9 success)."""
    root = tmp_path_factory.mktemp("study") / "runs"
    for seed in (0, 1):
        write_run(root, "rims", seed, {"none": 0.9, "distractors": 0.8 - 0.1 * seed, "size": 0.6},
                  curve=(0.2, 0.5, 0.8))
        write_run(root, "lstm", seed, {"none": 0.4, "distractors": 0.3 + 0.1 * seed, "size": 0.2},
                  curve=(0.1, 0.2, 0.3))
    assert run_main(["report", root, "--out", root.parent / "report", "--reps", 100]) == 0
    return root


def test_report_html_is_self_contained_and_its_images_decode(study):
    page = (study.parent / "report" / "report.html").read_text()
    assert "http://" not in page and "https://" not in page  # opens offline
    images = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)
    assert len(images) == 3  # learning curves, ladder, performance profiles
    for data in images:
        pixels = iio.imread(io.BytesIO(base64.b64decode(data)), extension=".png")
        assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.shape[1] > 100
    assert re.findall(r"<img[^>]*src='(?!data:)", page) == []


def test_report_tables_hold_the_numbers_of_compare_csv(study):
    page = (study.parent / "report" / "report.html").read_text()
    md = (study.parent / "report" / "report.md").read_text()
    with open(study / "compare" / "compare.csv") as f:
        rows = list(csv.DictReader(f))
    pooled = [r for r in rows if r["shift"] == "all"]
    assert pooled
    for r in pooled:  # every pooled aggregate with its CI, as printed in the tables
        for agg in ("iqm", "mean", "median"):
            text = (f"{format_number(float(r[agg]))} [{format_number(float(r[agg + '_ci95_low']))}, "
                    f"{format_number(float(r[agg + '_ci95_high']))}]")
            assert text in page and text in md, text
    with open(study / "compare" / "improvement.csv") as f:
        poi = list(csv.DictReader(f))
    for p in poi:  # each pair once, against the reference core (lstm): P [CI] and the IQM difference [CI]
        cells = [f"{format_number(float(p[k]))} [{format_number(float(p[ci + 'ci95_low']))}, "
                 f"{format_number(float(p[ci + 'ci95_high']))}]" for k, ci in (("probability", ""),
                                                                             ("difference", "difference_"))]
        row = f"<td>{p['core_a']}</td><td>{p['core_b']}</td><td>{cells[0]}</td><td>{cells[1]}</td>"
        assert (row in page) == (p["core_b"] == "lstm"), row
    sections = ("Verdict", "Comparisons whose 95% CI excludes 0.5", "Runs below the random baseline", "Caveats",
                "What was run", "Learning curves", "Each shift&#x27;s ladder", "Pooled aggregates",
                "Probability of improvement", "Performance profiles", "Random-policy baseline")
    positions = [page.index(section) for section in sections]
    assert positions == sorted(positions)  # the answer first, the details last
    assert page.count("<details>") == 6
    assert "commit" in page and "<td>0 1</td>" in page  # seeds per core


def test_report_flags_the_undertrained_core_and_few_seeds(study):
    md = (study.parent / "report" / "report.md").read_text()
    assert "lstm looks undertrained" in md and "rims looks undertrained" not in md
    assert "only 2 seeds" in md and "train at least 10 seeds" in md
    assert "size changes the task's scale" in md
    # the Markdown twin references PNGs that lie beside it
    for name in re.findall(r"\]\((report_\w+\.png)\)", md):
        assert (study.parent / "report" / name).stat().st_size > 1000


def test_report_default_out_is_the_dir_and_reuses_a_fresh_comparison(study, capsys, run_main):
    before = (study / "compare" / "compare.json").stat().st_mtime_ns
    assert run_main(["report", study, "--reps", 100]) == 0
    assert (study / "report.html").is_file() and (study / "report.md").is_file()
    assert (study / "compare" / "compare.json").stat().st_mtime_ns == before  # not recomputed
    assert f"report: {study / 'report.html'}" in capsys.readouterr().out


def test_report_of_a_dir_without_evaluated_runs_is_a_user_error(tmp_path, capsys, run_main, demo_run_config):
    assert run_main(["report", tmp_path]) == 2
    assert "no run dirs" in capsys.readouterr().err
    run = tmp_path / "E" / "rims" / "seed0"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(demo_run_config("rims", 0)))
    assert run_main(["report", tmp_path]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "rims-rl evaluate" in err and not (tmp_path / "report.html").exists()


def test_report_over_a_compare_json_it_cannot_read_is_a_user_error(tmp_path, capsys, write_run, run_main):
    root = tmp_path / "runs"
    write_run(root, "rims", 0, {"none": 0.9, "distractors": 0.8, "size": 0.6})
    (root / "compare").mkdir()
    damaged = '{"format": 3, "bootstrap": {"reps": 2000, "seed": 0}, "summary": []}'  # no profiles
    for text in (damaged, "not json"):
        (root / "compare" / "compare.json").write_text(text)  # newer than the results: reused
        assert run_main(["report", root]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "compare.json" in err and "Traceback" not in err
        assert not (root / "report.html").exists()
    (root / "compare" / "compare.json").write_text('{"summary": []}')  # an older rims-rl's: compared again
    assert run_main(["report", root]) == 0 and (root / "report.html").is_file()
    from agents.experiments.compare import COMPARE_FORMAT

    assert json.loads((root / "compare" / "compare.json").read_text())["format"] == COMPARE_FORMAT


def test_report_redoes_a_fresh_comparison_that_covers_other_runs(tmp_path, write_run, run_main):
    """A compare.json newer than every result, but of some of the runs only (an earlier demo with fewer
    cores), is not reused: the report's tables cover every run its runs.csv and curves show."""
    import json

    root = tmp_path / "runs"
    rims = write_run(root, "rims", 0, {"none": 0.9, "distractors": 0.8, "size": 0.6})
    write_run(root, "lstm", 0, {"none": 0.5, "distractors": 0.4, "size": 0.3})
    assert run_main(["compare", rims, "--out", root / "compare", "--reps", 50]) == 0  # rims alone, newest file
    assert run_main(["report", root, "--reps", 50]) == 0
    runs = json.loads((root / "compare" / "compare.json").read_text())["runs"]
    assert sorted(r["core"] for r in runs) == ["lstm", "rims"]
    assert "| lstm |" in (root / "report.md").read_text()


def test_report_redoes_a_fresh_comparison_of_other_bootstrap_settings_and_reuses_its_own(tmp_path, write_run,
                                                                                          run_main):
    """A compare.json of the same runs, newer than every result, but bootstrapped with other resamples or
    another seed is compared again, so that the report's CIs are the ones its --reps and --seed ask for."""
    import json

    root = tmp_path / "runs"
    write_run(root, "rims", 0, {"none": 0.9, "distractors": 0.8, "size": 0.6})
    write_run(root, "lstm", 0, {"none": 0.5, "distractors": 0.4, "size": 0.3})
    compare_json = root / "compare" / "compare.json"
    assert run_main(["compare", root, "--reps", 20]) == 0
    assert json.loads(compare_json.read_text())["bootstrap"] == {"reps": 20, "seed": 0}
    assert run_main(["report", root, "--reps", 50, "--seed", 3]) == 0
    assert json.loads(compare_json.read_text())["bootstrap"] == {"reps": 50, "seed": 3}
    written = compare_json.stat().st_mtime_ns
    assert run_main(["report", root, "--reps", 50, "--seed", 3]) == 0  # the same settings: reused, not redone
    assert compare_json.stat().st_mtime_ns == written
    assert run_main(["report", root, "--reps", 50, "--seed", 4]) == 0  # the same reps, another seed: redone
    assert json.loads(compare_json.read_text())["bootstrap"] == {"reps": 50, "seed": 4}


def test_learning_curves_take_the_iqm_across_seeds_with_ci_bands_only_for_several_runs(study, tmp_path):
    curves = learning_curves(find_run_dirs([study]), reps=100)
    rims = curves["RedBallDistractors-v0"]["training return (unshifted)"]["rims"]
    assert rims["runs"] == 2 and rims["steps"][0] == 1000 and rims["steps"][-1] == 3000
    # seeds 0 and 1 log value + 0.01 * seed: the IQM of two runs is their mean
    assert rims["iqm"][-1] == pytest.approx(0.805) and rims["iqm"][0] == pytest.approx(0.205)
    assert all(lo <= m <= hi for lo, m, hi in zip(rims["ci95_low"], rims["iqm"], rims["ci95_high"]))
    single = learning_curves(find_run_dirs([study / "RedBallDistractors-v0" / "rims" / "seed0"]), reps=100)
    one = single["RedBallDistractors-v0"]["training return (unshifted)"]["rims"]
    assert one["ci95_low"] is None and one["iqm"][-1] == pytest.approx(0.8)
    assert np.allclose(np.diff(one["steps"]), np.diff(one["steps"])[0])  # a common, even grid of env steps


# "eval/success_rate": the tag in run dirs of earlier versions; a run resumed since has both
@pytest.mark.parametrize("tags", [["validation/success_rate"] * 2, ["eval/success_rate"] * 2,
                                  ["eval/success_rate", "validation/success_rate"]])
def test_learning_curves_of_a_periodic_shifted_evaluation_name_its_shifts(tags, tmp_path, write_run):
    from torch.utils.tensorboard import SummaryWriter

    run = write_run(tmp_path, "gru", 0, {"none": 0.9, "distractors": 0.8, "size": 0.6}, eval_shifts="distractors=2")
    for session, (tag, step, value) in enumerate(zip(tags, (1000, 3000), (0.2, 0.6)), start=1):
        writer = SummaryWriter(str(run / "tb" / f"train_{session}"))
        writer.add_scalar(tag, value, step)
        writer.close()
    curves = learning_curves([run], reps=10)["RedBallDistractors-v0"]
    shifted = curves["periodic eval success rate (distractors=2)"]["gru"]
    assert shifted["iqm"][0] == pytest.approx(0.2) and shifted["iqm"][-1] == pytest.approx(0.6)
    assert "training return (unshifted)" in curves


def test_undertrained_flag_on_negative_returns_uses_the_distance_above_the_random_policy():
    from agents.experiments.report import caveats

    runs = [{"env": "ALE/Pong-v5", "label": c, "core": c, "seed": s, "timesteps": 1000, "episodes": 10}
            for c in ("rims", "lstm") for s in range(10)]
    summary = [{"env": "ALE/Pong-v5", "label": c, "core": c, "shift": "all", "level": 0, "metric": "return", "iqm": v}
               for c, v in (("rims", -20.0), ("lstm", -10.0))]
    baselines = {"ALE/Pong-v5": {("none", 0): {"random_return": -21.0}}}
    notes = caveats({"summary": summary, "runs": runs}, baselines)
    # rims is 1 point above chance, lstm 11: rims is flagged although -20 / -10 = 2 "looks better"
    assert len(notes) == 1 and "rims looks undertrained" in notes[0] and "above the random policy" in notes[0]
    summary[0]["iqm"] = -12.0  # 9 of 11: above 80% of the best, not flagged
    assert caveats({"summary": summary, "runs": runs}, baselines) == []


def test_report_elsewhere_gets_compares_tables(study):
    for name in ("compare.csv", "improvement.csv"):
        assert (study.parent / "report" / name).read_bytes() == (study / "compare" / name).read_bytes()


def test_report_writes_runs_csv_with_each_runs_unshifted_success_and_return(study):
    with open(study.parent / "report" / "runs.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["core"], r["seed"]) for r in rows] == [("lstm", "0"), ("lstm", "1"), ("rims", "0"), ("rims", "1")]
    for r in rows:
        expected = 0.9 if r["core"] == "rims" else 0.4  # the fixture's unshifted success share (return 1 each)
        assert float(r["success_rate"]) == pytest.approx(expected)
        assert float(r["mean_return"]) == pytest.approx(expected)
        assert (r["timesteps"], r["budget"]) == ("3000", "3000")
        assert r["wall_seconds"] == ""  # the fixture logged no time/fps: no wall time is made up


def test_training_wall_seconds_adds_every_training_process(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    from agents.experiments.curves import training_wall_seconds

    tb = tmp_path / "tb" / "train_1"
    # first process: rollouts of 100 steps at 50 fps, events 10 s apart; a resume: one more event file
    for start_step, walls in ((100, (1000.0, 1010.0, 1020.0)), (400, (2000.0, 2004.0))):
        writer = SummaryWriter(str(tb), filename_suffix=f".{start_step}")
        for i, wall in enumerate(walls):
            writer.add_scalar("time/fps", 50.0, start_step + 100 * i, walltime=wall)
        writer.close()
    # (1020 - 1000 + 100/50) + (2004 - 2000 + 100/50)
    assert training_wall_seconds(tmp_path, rollout_steps=100) == pytest.approx(22.0 + 6.0)
    assert training_wall_seconds(tmp_path / "nothing", rollout_steps=100) is None


def test_curves_csv_carries_a_runs_training_log_without_its_event_files(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    from agents.experiments.curves import CURVES_FILE, read_scalars, training_wall_seconds, write_curves_csv
    from rims_rl.errors import UserError

    run = tmp_path / "run"
    for start_step, walls in ((100, (1000.0, 1010.0)), (300, (2000.0, 2004.0))):  # a run and its resume
        writer = SummaryWriter(str(run / "tb" / "train_1"), filename_suffix=f".{start_step}")
        for i, wall in enumerate(walls):
            writer.add_scalar("time/fps", 50.0, start_step + 100 * i, walltime=wall)
            writer.add_scalar("rollout/ep_rew_mean", 0.1 * (start_step + 100 * i), start_step + 100 * i,
                              walltime=wall)
        writer.add_scalar("train/loss", 9.0, start_step, walltime=walls[0])  # not a curve: left out
        writer.close()
    published = tmp_path / "published"
    published.mkdir()
    write_curves_csv(run, published / CURVES_FILE)
    steps, values = read_scalars(published)["rollout/ep_rew_mean"]
    assert steps.tolist() == [100, 200, 300, 400] and values == pytest.approx([10.0, 20.0, 30.0, 40.0])
    assert set(read_scalars(published)) == {"rollout/ep_rew_mean"}
    assert training_wall_seconds(published, 100) == training_wall_seconds(run, 100) == pytest.approx(12.0 + 6.0)
    (published / CURVES_FILE).write_text("process,tag,step\n0,time/fps,oops\n")
    with pytest.raises(UserError, match="curves.csv is damaged"):
        read_scalars(published)


def test_a_killed_processes_abandoned_events_are_dropped_as_tensorboard_does(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    from agents.experiments.curves import read_scalars, training_wall_seconds
    from agents.experiments.tb_tags import periodic_tag

    val = periodic_tag("mean_return")
    killed = SummaryWriter(str(tmp_path / "tb" / "train_1"), filename_suffix=".a")
    for step, wall in ((25600, 100.0), (51200, 200.0)):  # 51200 was never checkpointed
        killed.add_scalar(val, 0.2 if step == 25600 else 0.9, step, walltime=wall)
        killed.add_scalar("time/fps", 100.0, step, walltime=wall)
    killed.close()
    resumed = SummaryWriter(str(tmp_path / "tb" / "train_1"), filename_suffix=".b", purge_step=40961)
    for step, wall in ((66560, 300.0), (92160, 400.0)):
        resumed.add_scalar(val, 0.3 if step == 66560 else 0.4, step, walltime=wall)
        resumed.add_scalar("time/fps", 100.0, step, walltime=wall)
    resumed.close()
    steps, values = read_scalars(tmp_path)[val]
    assert steps.tolist() == [25600, 66560, 92160] and values == pytest.approx([0.2, 0.3, 0.4])
    assert training_wall_seconds(tmp_path, 100) == pytest.approx(100.0 + 1.0 + 100.0 + 1.0)  # both processes


def test_a_step_lower_than_the_last_drops_the_later_ones_and_train_dirs_go_in_numeric_order(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    from agents.experiments.curves import read_scalars

    for number, points in ((2, ((100, 1.0), (200, 2.0), (300, 3.0))), (10, ((200, 20.0),))):
        writer = SummaryWriter(str(tmp_path / "tb" / f"train_{number}"))
        for step, value in points:
            writer.add_scalar("rollout/ep_rew_mean", value, step)
        writer.close()
    steps, values = read_scalars(tmp_path)["rollout/ep_rew_mean"]
    assert steps.tolist() == [100, 200] and values.tolist() == [1.0, 20.0]  # train_10 came after train_2


def test_study_findings_tables_hold_compares_numbers(study, tmp_path, load_script):
    from agents.experiments.compare_tables import cell
    from agents.experiments.comparison_files import read_comparison

    module = load_script("benchmarks/studies/findings.py")
    comparison = read_comparison(study / "compare" / "compare.json")
    text = module.findings(comparison, label="rims")
    summary = comparison["summary"]
    for core in ("rims", "lstm"):
        unshifted = next(s for s in summary if s["core"] == core and s["shift"] == "all" and s["level"] == 0
                         and s["metric"] == "success_rate")
        line = next(line for line in text.splitlines() if line.startswith(f"| {core} | 2 |"))
        assert line.split(" | ")[2] == cell(unshifted)
    poi = next(p for p in comparison["improvement"] if p["core_a"] == "rims" and p["core_b"] == "lstm"
               and p["shift"] == "all" and p["level"] == 0 and p["metric"] == "success_rate")
    assert f"| lstm | {format_number(poi['probability'])} [" in text
    # the tally counts every clear comparison with rims, in the direction the CI points
    from agents.experiments.findings import clear_comparisons

    clear, made = clear_comparisons(comparison)
    with_rims = [p for p in clear if "rims" in (p["label_a"], p["label_b"])]
    tally = text.split("#### Comparisons with rims", 1)[1]
    assert f"({len(with_rims)} of the {len(clear)} clear ones; {made} comparisons" in tally
    rows = [line.strip(" |").split(" | ") for line in tally.splitlines() if line.startswith("| RedBall")]
    ahead = sum(int(r[3].split(":")[0]) for r in rows)
    behind = sum(int(r[4].split(":")[0]) for r in rows)
    assert with_rims and ahead == sum(p["label_a"] == "rims" for p in with_rims)
    assert behind == sum(p["label_b"] == "rims" for p in with_rims)
    # a published folder's CSVs give the same text as compare.json; a folder without them is one line
    assert module.findings(module.read_tables(study.parent / "report"), label="rims") == text
    with pytest.raises(module.UserError, match="cannot read .*compare.csv"):
        module.read_tables(study)
    # the primary comparison, as the report's first table shows it
    from agents.experiments.findings import Primary, primary_answer, reading

    primary = Primary("RedBallDistractors-v0", "distractors", 1, ("rims", "lstm"))
    row = next(p for p in comparison["improvement"] if p["shift"] == "distractors" and p["level"] == 1
               and p["label_a"] == "rims" and p["label_b"] == "lstm" and p["metric"] == "success_rate")
    first = module.primary_text(comparison, primary)
    assert f"| 2 vs 2 | {format_number(row['probability'])} [{format_number(row['ci95_low'])}, " in first
    assert f" | {reading(row)} |\n" in first and "CI" in reading(row)
    assert first.rstrip().endswith(primary_answer(comparison, primary))
    assert "do not hold" in module.primary_text(comparison, Primary("Other-v0", "all", 1, ("rims", "lstm")))
    with pytest.raises(module.UserError, match=r"^--label 'rimz' is not a compared label; valid: lstm, rims$"):
        module.check_label(comparison, "rimz")
    older = tmp_path / "older"  # a compare.csv of a rims-rl before labels
    older.mkdir()
    (older / "compare.csv").write_text("env,core,shift,level,metric,runs\nX,rims,all,0,return,2\n")
    (older / "improvement.csv").write_text((study.parent / "report" / "improvement.csv").read_text())
    with pytest.raises(module.UserError, match="compare.csv of this rims-rl \\(no column 'label'\\)"):
        module.read_tables(older)


def _section(md: str, heading: str) -> str:
    """The text of report.md's ``## heading`` section."""
    return md.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]


def test_generated_findings_list_every_clear_comparison_once_and_count_them(study):
    md = (study.parent / "report" / "report.md").read_text()
    with open(study / "compare" / "improvement.csv") as f:
        poi = list(csv.DictReader(f))
    clear = [p for p in poi if p["ci95_low"] and float(p["ci95_low"]) > 0.5]
    section = _section(md, "Comparisons whose 95% CI excludes 0.5")
    assert clear and len(clear) == section.count(" beats ")  # one line per clear pair, in the winner's direction
    for p in clear:
        assert f"{p['core_a']} beats {p['core_b']}" in section
    unordered = {(p["shift"], p["level"], p["metric"], *sorted((p["core_a"], p["core_b"]))) for p in poi}
    assert f"{len(unordered)} comparisons were made" in section and "not adjusted" in section


def test_runs_below_the_random_policy_are_named(study):
    md = (study.parent / "report" / "report.md").read_text()
    section = _section(md, "Runs below the random baseline")
    # the fixture's lstm runs succeed 0.4 unshifted, the random policy 0.6; rims 0.9
    assert "| RedBallDistractors-v0 | lstm | 0 | success rate | 0.4 | 0.6 |" in section
    assert "| RedBallDistractors-v0 | lstm | 1 |" in section and "| rims |" not in section


def test_failed_runs_the_iqm_trims_are_named_and_a_primary_comparison_comes_first(tmp_path, run_main, write_run):
    root = tmp_path / "runs"
    for seed in range(4):
        write_run(root, "rims", seed, {"none": 0.0 if seed == 2 else 0.9, "distractors": 0.8, "size": 0.6})
        write_run(root, "lstm", seed, {"none": 0.8, "distractors": 0.5, "size": 0.5})
    study_file = tmp_path / "study.yaml"
    study_file.write_text("cores: [rims, lstm]\nprimary:\n  env: RedBallDistractors-v0\n  shift: distractors\n"
                          "  level: 1\n  cores: [rims, lstm]\n  metric: success_rate\n")
    assert run_main(["report", root, "--out", tmp_path / "rep", "--reps", 50, "--study", study_file]) == 0
    md = (tmp_path / "rep" / "report.md").read_text()
    assert md.index("## Primary comparison") < md.index("## Verdict")
    primary = _section(md, "Primary comparison")
    assert "| rims vs lstm | 4 vs 4 | 1 [1, 1] | 0.3 [0.3, 0.3] | rims beats lstm (95% CI above 0.5) |" in primary
    # the answer in words, every number from the comparison: supported, P, the IQM difference and both IQMs
    assert ("Primary hypothesis, rims beats lstm on success rate in distractors level 1 of RedBallDistractors-v0: "
            "supported: the 95% CI of P lies above 0.5. Over 4 vs 4 runs, P(rims beats lstm) = 1 [1, 1]; the IQM "
            "difference rims - lstm is 0.3 [0.3, 0.3]; IQM success rate: rims 0.8 [0.8, 0.8], lstm 0.5 [0.5, 0.5] "
            "(95% bootstrap CIs over runs). A uniformly random policy scores 0.5 on the same episodes.") in " ".join(
        primary.split())
    # a study planned with 5 seeds gets no verdict from 4 runs of each label, whatever their CI says
    study_file.write_text(study_file.read_text() + "seeds: [0, 1, 2, 3, 4]\n")
    assert run_main(["report", root, "--out", tmp_path / "rep", "--reps", 50, "--study", study_file]) == 0
    planned = " ".join(_section((tmp_path / "rep" / "report.md").read_text(), "Primary comparison").split())
    assert ("distractors level 1 of RedBallDistractors-v0: no verdict: 4 vs 4 of the planned 5 runs per label. "
            "Over 4 vs 4 runs") in planned and "supported" not in planned
    assert "| rims vs lstm | 4 vs 4 | 1 [1, 1] | 0.3 [0.3, 0.3] | no verdict (4 vs 4 of the planned 5 runs per " \
           "label) |" in planned and "95% CI above 0.5" not in planned
    below = _section(md, "Runs below the random baseline")
    assert "| RedBallDistractors-v0 | rims | 2 | 4 | 1 |" in below  # at 0, trimmed by the IQM of 4 runs
    assert "| RedBallDistractors-v0 | rims | 2 | success rate | 0 | 0.6 |" in below


def test_bad_study_files_and_references_are_one_line_errors(study, tmp_path, capsys, run_main):
    bad = tmp_path / "bad.yaml"
    for text, expected in (("primary: [1]", "primary must be a mapping"),
                           ("primary: {env: E, shift: all, level: 1, cores: [rims]}", "a list of two labels"),
                           ("primary: {env: E, shift: all, level: x, cores: [a, b]}", "level must be an integer"),
                           ("primary: {env: E, shift: all, level: 1, cores: [a, b], colour: red}", "unknown key")):
        bad.write_text(text)
        assert run_main(["report", study, "--out", tmp_path / "r", "--study", bad]) == 2
        err = capsys.readouterr().err
        assert expected in err and len(err.strip().splitlines()) == 1, err
    assert run_main(["report", study, "--out", tmp_path / "r", "--study", tmp_path / "none.yaml"]) == 2
    assert "cannot read study file" in capsys.readouterr().err
    assert run_main(["report", study, "--out", tmp_path / "r", "--reference", "gru"]) == 2
    assert "--reference 'gru' is not a compared label; valid: lstm, rims" in capsys.readouterr().err
    assert not (tmp_path / "r" / "report.html").exists()


def test_names_from_run_files_are_escaped_in_both_reports(tmp_path, run_main, write_run):
    root = tmp_path / "runs"
    hostile = "<img src=x onerror=alert(1)>|x"
    for seed in (0, 1):
        run = write_run(root, "rims", seed, {"none": 0.9, "distractors": 0.8, "size": 0.6})
        cfg = yaml.safe_load((run / "config.yaml").read_text())
        cfg["core"] = hostile
        (run / "config.yaml").write_text(yaml.safe_dump(cfg))
        write_run(root, "lstm", seed, {"none": 0.8, "distractors": 0.5, "size": 0.5})
    assert run_main(["report", root, "--out", tmp_path / "rep", "--reps", 20]) == 0
    md = (tmp_path / "rep" / "report.md").read_text()
    page = (tmp_path / "rep" / "report.html").read_text()
    assert not re.search(r"(?<!\\)<img", md) and "\\<img src=x onerror=alert(1)\\>\\|x" in md
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;|x" in page


def test_package_commit_names_the_commit_and_only_tracked_changes_make_it_dirty(tmp_path):
    import subprocess

    from agents.experiments.report import package_commit

    def git(*args):
        return subprocess.run(["git", "-C", str(tmp_path), *args], capture_output=True, text=True, check=True).stdout

    git("init", "-q")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("add", "code.py")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    head = git("rev-parse", "--short", "HEAD").strip()
    assert package_commit(tmp_path) == head
    (tmp_path / "notes.txt").write_text("untracked\n")  # an untracked file is not a change to the source
    assert package_commit(tmp_path) == head
    (tmp_path / "code.py").write_text("x = 2\n")
    assert package_commit(tmp_path) == head + "+dirty"
    assert package_commit(tmp_path / "not-a-repo") == "unknown"


def test_report_reads_the_commit_before_it_writes_a_file(study, tmp_path, monkeypatch):
    from agents.experiments import report as report_module
    from agents.experiments.comparison_files import read_comparison
    from agents.experiments.runs import find_run_dirs

    out = tmp_path / "published"
    seen = []
    monkeypatch.setattr(report_module, "package_commit", lambda: seen.append(out.exists()) or "abc1234")
    report_module.write_report(read_comparison(study / "compare" / "compare.json"), find_run_dirs([study]), out,
                               reps=20)
    assert seen == [False]  # a report published inside the checkout does not mark its own commit dirty
    assert "from commit abc1234." in (out / "report.md").read_text()


def test_table_numbers_are_compact_and_never_negative_zero():
    assert format_number(-0.0) == "0" and format_number(0.0) == "0"
    assert format_number(-0.0225) == "-0.0225" and format_number(0.12345) == "0.123"
    assert format_number(12345.6) == "12346" and format_number(None) == "-" and format_number(float("nan")) == "-"


def test_the_primary_hypothesis_verdict_follows_the_ci_of_p_in_every_direction():
    from agents.experiments.findings import Primary, excludes_half, hypothesis_verdict, primary_answer, reading

    def row(p, low, high):
        return {"env": "E", "shift": "size", "level": 2, "metric": "success_rate", "label_a": "rims",
                "label_b": "lstm", "runs_a": 10, "runs_b": 10, "probability": p, "ci95_low": low, "ci95_high": high,
                "difference": None, "difference_ci95_low": None, "difference_ci95_high": None}

    assert hypothesis_verdict(row(0.8, 0.6, 0.95)).startswith("supported:")
    assert hypothesis_verdict(row(0.5, 0.5, 0.7)).startswith("inconclusive:")  # a bound at 0.5 is not outside it
    assert hypothesis_verdict(row(0.2, 0.05, 0.4)) == "refuted: the 95% CI of P lies below 0.5 (lstm is ahead)"
    assert hypothesis_verdict(row(1.0, None, None)).startswith("no verdict:")
    # the report's reading, its list of clear comparisons and the verdict read one CI the same way
    for (low, high), verdict, words, clear in [((0.6, 0.95), "supported", "rims beats lstm", True),
                                               ((0.5, 0.7), "inconclusive", "no clear difference", False),
                                               ((0.3, 0.5), "inconclusive", "no clear difference", False),
                                               ((0.05, 0.4), "refuted", "lstm beats rims", False),
                                               ((None, None), "no verdict", "no CI", False)]:
        r = row(0.5, low, high)
        assert hypothesis_verdict(r).startswith(verdict) and reading(r).startswith(words)
        assert excludes_half(r) is clear
    primary = Primary("E", "size", 2, ("rims", "lstm"))
    # the random policy's score on the primary setting's episodes, and which labels' IQM CIs lie below it
    summary = [{"env": "E", "label": label, "shift": "size", "level": 2, "metric": "success_rate", "iqm": iqm,
                "iqm_ci95_low": iqm - 0.05, "iqm_ci95_high": iqm + 0.05} for label, iqm in (("rims", 0.2), ("lstm", 0.3))]
    scores = [{"env": "E", "label": "rims", "seed": 0, "shift": shift, "level": level, "random_success_rate": random,
               "random_return": None} for shift, level, random in (("size", 2, 0.3), ("none", 0, 0.9), ("size", 1, 0.6))]
    below = primary_answer({"summary": summary, "improvement": [row(0.2, 0.05, 0.4)], "scores": scores}, primary)
    assert below.endswith("lstm 0.3 [0.25, 0.35] (95% bootstrap CIs over runs). A uniformly random policy scores "
                          "0.3 on the same episodes; rims's IQM CI lies below it.")
    scores[0]["random_success_rate"] = 0.4
    assert primary_answer({"summary": summary, "improvement": [row(0.2, 0.05, 0.4)], "scores": scores},
                          primary).endswith("scores 0.4 on the same episodes; both labels' IQM CIs lie below it.")
    # pooled shifts: the mean over the settings every run evaluated (distractors 2: one run only, left out)
    from agents.experiments.findings import random_score

    scores += [{**scores[0], "seed": seed, "shift": shift, "random_success_rate": random}
               for seed, shift, random in ((0, "floor_noise", 0.2), (1, "floor_noise", 0.2), (1, "size", 0.4),
                                           (0, "distractors", 0.9))]
    scores += [{**scores[1], "seed": 1}, {**scores[2], "seed": 1}]
    assert random_score({"scores": scores}, Primary("E", "all", 2, ("rims", "lstm"))) == pytest.approx(0.3)
    assert random_score({"scores": scores}, Primary("E", "all", 0, ("rims", "lstm"))) == pytest.approx(0.9)
    assert random_score({"scores": scores}, Primary("E", "size", 2, ("rims", "lstm"), "normalized_score")) is None
    text = primary_answer({"summary": [], "improvement": [row(0.3, 0.1, 0.52)]}, primary)
    assert "size level 2 of E: inconclusive" in text and "P(rims beats lstm) = 0.3 [0.1, 0.52]" in text
    assert "the IQM difference rims - lstm is not computed; IQM success rate: rims -, lstm -" in text
    assert primary_answer({"summary": [], "improvement": []}, primary).endswith("no verdict.")
