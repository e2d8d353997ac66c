"""User text (paths, env ids, shift names, core names) printed through rich is never read as markup: a
logdir ``m[/x]`` does not crash a sweep (nor its re-run), ``[bold]`` stays in printed paths, a shift named
``x[/bad]`` in results.json does not crash compare's tables."""
from __future__ import annotations

import json

from agents.experiments.evaluation.episodes import Episode
from agents.experiments.evaluation.ladder import Setting
from agents.experiments.evaluation.metrics import summarize
from agents.experiments.evaluation.tables import print_results_table
from agents.experiments.sweep.grid import PlannedRun, RunOutcome
from agents.experiments.sweep.live import LiveLine

ENV = "RedBallDistractors-v0"
HOSTILE = "m[/x] [bold]b[/bold] :smile:"


def test_the_live_line_prints_run_dirs_and_reasons_as_written(tmp_path, capsys):
    run = PlannedRun({"env": ENV, "core": "lstm", "seed": 0, "timesteps": 64}, tmp_path / HOSTILE / "seed0", "new")
    line = LiveLine(enabled=False)
    line.add(run)
    line.finished(RunOutcome(run, "failed", None, "bad value [/y] in [red]x"))
    assert capsys.readouterr().out == f"failed: {tmp_path / HOSTILE / 'seed0'} (bad value [/y] in [red]x)\n"


def test_an_evaluation_table_prints_shift_names_and_titles_as_written(capsys):
    episodes = [Episode(i, 1000 + i, 1.0, True, 10) for i in range(4)]
    rows = [summarize(ENV, Setting(name, level, {}), episodes) for name, level in (("none", 0), ("x[/bad]", 1),
                                                                                    ("[bold]size", 2))]
    print_results_table(rows, f"{ENV} - [bold]lstm[/bold] :smile:")
    out = capsys.readouterr().out
    assert "x[/bad]" in out and "[bold]size" in out and "[bold]lstm[/bold] :smile:" in out


def test_compare_prints_a_shift_named_like_markup(tmp_path, run_main, write_run, capsys):
    runs = [write_run(tmp_path / "runs", core, seed, {"none": 0.8, "distractors": 0.5, "size": 0.4})
            for core in ("rims", "lstm") for seed in (0, 1)]
    for run in runs:
        path = run / "eval" / "results.json"
        data = json.loads(path.read_text())
        for row in data["results"]:
            row["shift"] = {"distractors": "x[/bad]", "size": "[bold]size"}.get(row["shift"], row["shift"])
        path.write_text(json.dumps(data))
    assert run_main(["compare", *map(str, runs), "--out", str(tmp_path / "cmp")]) == 0
    out = capsys.readouterr().out
    assert "x[/bad]" in out and "[bold]size" in out


def test_a_sweep_into_a_logdir_named_like_markup_prints_it_as_written_and_reruns(tmp_path, tiny_config, run_script,
                                                                                 ray_env):
    """Also: stdout holds the sweep's own lines only (none of Ray's)."""
    logdir = tmp_path / HOSTILE
    args = ["sweep", "--config", tiny_config(tmp_path, timesteps=32), "--core", "lstm", "--seed", 0, 1,
            "--logdir", logdir, "--workers", 2]
    first = run_script(args, timeout=240)
    assert first.returncode == 0, first.stdout + first.stderr
    runs = [logdir / ENV / "lstm" / f"seed{seed}" for seed in (0, 1)]
    lines = first.stdout.splitlines()
    assert lines[0].startswith(f"rims-rl sweep: 2 runs (1 env(s) x 1 label(s) x 2 seed(s)) under {logdir}: ")
    assert lines[1].startswith("Ray started locally with 2 CPUs in ")
    assert sorted(lines[2:4]) == [f"done: {run} (32 steps)" for run in runs]
    assert lines[4] == "sweep: 2 done (of 2 runs)" and lines[5].split() == ["status", "steps", "run", "dir", "note"]
    assert [line.split(maxsplit=2) for line in lines[6:]] == [["done", "32", str(run)] for run in runs]

    again = run_script(args, timeout=120)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "sweep: 2 skipped (of 2 runs)" in again.stdout and str(runs[0]) in again.stdout
