"""The experiment commands behind ``train_agent.py`` besides ``train``: evaluate, compare, demo, presets, record.

Each function validates its input first (UserError, one line) and only then creates files, so a
bad flag never leaves a half-made run dir behind.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from agents.experiments.config import DEFAULT_EPISODES, UserError
from agents.experiments.devices import resolve_device
from agents.experiments.files import atomic_write_bytes
from agents.experiments.evaluation import (EVAL_ENVS, EVAL_THREADS, Result, evaluate_model,
                                           log_results_to_tensorboard, print_results_table, success_ci_half_width,
                                           sweep_settings, torch_threads, write_results)
from agents.experiments.runs import (CONFIG_FILE, EVAL_DIR, FINAL_MODEL, TB_DIR, find_run_dirs, is_run_dir,
                                     load_model, read_run_config, resolve_model_path, run_dir_for,
                                     run_state)
from agents.experiments.train import EVAL_SEED, _run_config, check_logdir, check_seed, resolve_config, train_run

MAX_REPS = 100_000  # bootstrap resamples of `compare` (more only costs memory: 2,000 give stable CIs)


def check_out_dir(out_dir: Path, files: Sequence[str]) -> None:
    """UserError unless ``out_dir`` is (or can become) a dir in which ``files`` can be written."""
    for path in (out_dir, *out_dir.parents):
        if path.exists() and not path.is_dir():
            raise UserError(f"--out {out_dir}: {path} is a file, not a directory")
    for name in files:
        if (out_dir / name).is_dir():
            raise UserError(f"--out {out_dir}: {out_dir / name} is a directory; choose another --out")


# ---------------------------------------------------------------- evaluation



def check_episodes(episodes: int, seed: int) -> None:
    """UserError unless ``episodes`` >= 1 and every reset seed ``seed`` .. ``seed + episodes - 1`` is valid."""
    if episodes < 1:
        raise UserError(f"--episodes must be >= 1, got {episodes}")
    check_seed(seed)
    check_seed(seed + episodes - 1, "--seed + --episodes - 1 (the last episode's reset seed)")


def evaluate(
    model: str | os.PathLike,
    shifts: Sequence[str] | str | None = None,
    episodes: int = DEFAULT_EPISODES,
    seed: int = EVAL_SEED,
    deterministic: bool = False,
    out: str | os.PathLike | None = None,
    env: str | None = None,
    n_envs: int = EVAL_ENVS,
    quiet: bool = False,
    baseline_cache: str | os.PathLike | None = None,
    device: str = "auto",
) -> list[Result]:
    """The ``evaluate`` command: sweep shift settings on paired episodes, write results.csv/json, a
    plot and TB scalars.

    ``model``: a model file or a run dir. Outputs go to ``out`` (default ``<run>/eval``); the TB
    scalars to ``<run>/tb/eval`` (or ``<out>/tb``). The random-policy baseline is cached in
    ``baseline_cache`` (default ``<logdir>/<env>/random_baseline.json`` beside the run, else
    ``<out>/random_baseline.json``). ``device``: auto, cpu, cuda or
    cuda:N.
    """
    from stable_baselines3.common.utils import set_random_seed

    from agents.experiments.baseline import baseline_cache_path, random_baseline
    from agents.experiments.plots import plot_returns_vs_level

    model_file, run_dir = resolve_model_path(model)
    if env is None:
        if run_dir is None:
            raise UserError(f"--env is required: {model_file} does not lie in a run dir with {CONFIG_FILE}")
        env = read_run_config(run_dir)["env"]
    check_episodes(episodes, seed)
    if n_envs < 1:
        raise UserError(f"--n-envs must be >= 1, got {n_envs}")
    settings = sweep_settings(env, shifts)
    out_dir = Path(out) if out is not None else (run_dir / EVAL_DIR if run_dir else model_file.parent / EVAL_DIR)
    check_out_dir(out_dir, ("results.csv", "results.json", "returns.png"))
    agent = load_model(model_file, env_id=env, device=resolve_device(device))
    tb_dir = run_dir / TB_DIR / "eval" if run_dir else out_dir / "tb"
    cache = Path(baseline_cache) if baseline_cache is not None else baseline_cache_path(run_dir, out_dir)

    def say(r: Result) -> None:
        if not quiet:
            success = "" if r.success_rate is None else f", success {r.success_rate:.3g}"
            print(f"  {r.shift} level {r.level}: mean return {r.mean_return:.3g}{success} over {r.episodes} episodes")

    def baseline(setting):
        return random_baseline(env, setting, episodes, seed, cache, n_envs)

    if not quiet:
        print(f"evaluating {model_file} on {env}: {len(settings)} settings x {episodes} paired episodes "
              f"(seeds {seed}..{seed + episodes - 1}); random baseline cache {cache}")
    set_random_seed(seed)
    with torch_threads(EVAL_THREADS):
        results = evaluate_model(agent, env, settings, episodes, seed, deterministic, n_envs, on_result=say,
                                 baseline=baseline)
    meta = {"env": env, "model": str(model_file), "num_timesteps": int(agent.num_timesteps), "seed": seed,
            "deterministic": deterministic, "episodes": episodes, "baseline_cache": str(cache),
            "success_ci95_half_width": success_ci_half_width(results)}
    csv_path, json_path = write_results(results, out_dir, meta)
    label = f"{run_dir.parent.name} seed {read_run_config(run_dir)['seed']}" if run_dir else model_file.name
    plot = plot_returns_vs_level(results, out_dir / "returns.png", f"{env} - {label}")
    log_results_to_tensorboard(results, tb_dir, int(agent.num_timesteps), ladder_png=plot)
    if not quiet:
        print_results_table(results, f"{env} - {label} ({agent.num_timesteps} steps)")
        half = success_ci_half_width(results)
        if half is not None:
            print(f"largest 95% CI half-width of a success rate: {half:.3f} ({episodes} episodes per setting)")
        print(f"results: {csv_path}, {json_path}\nplot: {plot}\nTensorBoard: tensorboard --logdir {tb_dir}")
    return results


# ---------------------------------------------------------------- comparison

STUDY_REPORT = Path(__file__).resolve().parents[2] / "docs" / "results" / "distractors" / "report.md"
COMPARE_TABLES = ("compare.csv", "improvement.csv", "scores.csv")  # copied beside a report written elsewhere


def _default_compare_out(runs: Sequence[str | os.PathLike], run_dirs: list[Path]) -> Path:
    """``DIR/compare`` for one DIR holding runs, else ``<common parent of the runs>/compare``."""
    if len(runs) == 1 and not is_run_dir(runs[0]):
        return Path(runs[0]) / "compare"
    common = Path(os.path.commonpath([str(r.resolve()) for r in run_dirs]))
    return (common.parent if is_run_dir(common) else common) / "compare"


def compare(runs: Sequence[str | os.PathLike], out: str | os.PathLike | None = None, reps: int = 2000,
            seed: int = 0, quiet: bool = False) -> list[dict[str, Any]]:
    """The ``compare`` command: rliable aggregates with stratified-bootstrap CIs per core, shift, level
    and metric, probability of improvement, performance profiles; tables and plots.

    ``runs``: run dirs or dirs holding run dirs (each evaluated before). Output dir default:
    ``DIR/compare`` for one DIR, else ``<common parent of the runs>/compare``. Writes compare.csv,
    compare.json, improvement.csv, compare.png and profiles.png; returns the compare.csv rows. Prints the
    table; ``quiet`` leaves out only the lines naming the files written (callers that print their own).
    """
    from agents.experiments.compare import compare_runs, print_compare_table, print_warnings, write_compare
    from agents.experiments.plots import plot_compare, plot_profiles

    if not 1 <= reps <= MAX_REPS:
        raise UserError(f"--reps must be from 1 to {MAX_REPS:,}, got {reps}")
    check_seed(seed)
    run_dirs = find_run_dirs(list(runs))
    out = Path(out) if out is not None else _default_compare_out(runs, run_dirs)
    check_out_dir(out, ("compare.csv", "compare.json", "improvement.csv", "scores.csv", "compare.png", "profiles.png"))
    comparison = compare_runs(run_dirs, reps=reps, seed=seed)
    print_warnings(comparison)
    csv_path, json_path, improvement_path, scores_path = write_compare(comparison, out, run_dirs)
    plot = plot_compare(comparison["summary"], out / "compare.png")
    profiles = plot_profiles(comparison["profiles"], out / "profiles.png") if any(
        comparison["profiles"].values()) else None
    print_compare_table(comparison)
    if not quiet:
        print(f"compared {len(run_dirs)} runs: {csv_path}, {json_path}, {improvement_path}, {scores_path}\nplot: {plot}"
              + (f", {profiles}" if profiles else ""))
    return comparison["summary"]


# ---------------------------------------------------------------- report

def report(directory: str | os.PathLike, out: str | os.PathLike | None = None, reps: int = 2000,
           seed: int = 0, study: str | os.PathLike | None = None, reference: str | None = None) -> Path:
    """The ``report`` command: ``report.html`` (self-contained) and ``report.md`` for the runs under
    ``directory``, in ``out`` (default ``directory``), with ``runs.csv``; an ``out`` elsewhere also gets
    compare's ``compare.csv`` and ``improvement.csv``, so that it holds everything to publish. It reuses
    ``<directory>/compare/compare.json`` when that is newer than every run's results.json and covers
    exactly the runs under ``directory``, else runs ``compare`` first. ``study``: a study (grid) file whose
    ``primary`` comparison the report shows first; ``reference``: the core the verdict measures the others
    against (default lstm)."""
    from agents.experiments.curves import CURVE_REPS
    from agents.experiments.findings import read_primary, verdict
    from agents.experiments.report import REPORT_FILES, read_comparison, write_report

    if reps < 1:
        raise UserError(f"--reps must be >= 1, got {reps}")
    check_seed(seed)
    primary = read_primary(study) if study is not None else None
    directory = Path(directory)
    run_dirs = find_run_dirs([directory])
    missing = [r for r in run_dirs if not (r / EVAL_DIR / "results.json").is_file()]
    if missing:
        raise UserError(f"{missing[0]} has no {EVAL_DIR}/results.json; run `rims-rl evaluate --model {missing[0]}` "
                        f"first")
    out_dir = Path(out) if out is not None else directory
    check_out_dir(out_dir, (*REPORT_FILES, *COMPARE_TABLES))
    compare_json = _default_compare_out([directory], run_dirs) / "compare.json"
    newest = max((r / EVAL_DIR / "results.json").stat().st_mtime for r in run_dirs)
    comparison = read_comparison(compare_json) if compare_json.is_file() else None
    if (comparison is None or comparison.get("scores") is None or compare_json.stat().st_mtime < newest
            or {Path(r["dir"]).resolve() for r in comparison["runs"]} != {r.resolve() for r in run_dirs}):
        compare([directory], out=compare_json.parent, reps=reps, seed=seed, quiet=True)
        comparison = read_comparison(compare_json)
    verdict(comparison, reference)  # an unknown --reference is one line before anything is written
    page, md = write_report(comparison, run_dirs, out_dir, reps=min(reps, CURVE_REPS), primary=primary,
                            reference=reference)
    copied = [atomic_write_bytes(out_dir / name, (compare_json.parent / name).read_bytes())
              for name in COMPARE_TABLES if out is not None and out_dir.resolve() != compare_json.parent.resolve()]
    print(f"report: {page} (self-contained) and {md}" + (f"; with {', '.join(str(c) for c in copied)}" if copied
                                                          else ""))
    return page


# ---------------------------------------------------------------- demo (the main job)

def demo(
    config: str = "demo",
    overrides: Sequence[str] = (),
    cores: Sequence[str] = ("rims", "lstm"),
    seeds: Sequence[int] = (0,),
    logdir: str | os.PathLike = "runs/demo",
    shifts: Sequence[str] | str | None = None,
    episodes: int | None = None,
    progress: bool = True,
    reps: int = 2000,
    workers: int | None = None,
) -> list[dict[str, Any]]:
    """The main job: train each core x seed, evaluate across the shift ladder, compare, write the
    report and print where everything is.

    Re-running it with the same config reuses finished runs and resumes interrupted ones. Two or
    more runs to train are trained side by side on the sweep's engine (a local Ray instance with
    ``workers`` CPUs, default all cores); one run, or ``workers=1``, trains in this process.
    """
    base = resolve_config(config, overrides)
    check_logdir(logdir)
    sweep = shifts if shifts is not None else base["eval"]["sweep"]
    episodes = episodes if episodes is not None else base["eval"]["episodes"]
    sweep_settings(base["env"], sweep)  # validate before training
    check_episodes(episodes, EVAL_SEED)
    cores, seeds = list(dict.fromkeys(cores)), list(dict.fromkeys(seeds))  # a repeated core/seed: one run
    runs = [(_run_config(base, core, seed), run_dir_for(logdir, base["env"], core, seed))
            for core in cores for seed in seeds]
    states = [run_state(run_dir, cfg) for cfg, run_dir in runs]
    print(f"rims-rl demo: {', '.join(cores)} x seeds {', '.join(map(str, seeds))} on {base['env']}, "
          f"{base['timesteps']} steps each, results under {logdir}")
    if workers is not None and workers < 1:
        raise UserError(f"--workers must be >= 1, got {workers}")
    for (cfg, run_dir), state in zip(runs, states):
        if state == "done":
            print(f"{run_dir}: already trained, reusing {run_dir / FINAL_MODEL}")
    to_train = [(cfg, run_dir, state) for (cfg, run_dir), state in zip(runs, states) if state != "done"]
    if len(to_train) > 1 and (workers or os.cpu_count() or 1) > 1:
        from agents.experiments.sweep import PlannedRun, run_planned

        print(f"training {len(to_train)} runs side by side on Ray (output of each in <run dir>/train.log)")
        run_planned([PlannedRun(cfg, run_dir.resolve(), state) for cfg, run_dir, state in to_train],
                    workers=workers, progress=progress)
    else:
        for cfg, run_dir, state in to_train:
            print(f"training {cfg['core']} (seed {cfg['seed']}) -> {run_dir}")
            train_run(cfg, run_dir, resume=state == "resume", progress=progress)
    for _, run_dir in runs:
        evaluate(run_dir, shifts=sweep, episodes=episodes, quiet=True)
        print(f"evaluated {run_dir}: {run_dir / EVAL_DIR / 'results.csv'}")
    summary = compare([r for _, r in runs], out=Path(logdir) / "compare", reps=reps, quiet=True)
    out = Path(logdir)
    print(f"\nresults: per run {out}/<env>/<core>/seed<N>/eval/results.csv (+ returns.png); "
          f"comparison {out / 'compare' / 'compare.csv'}, {out / 'compare' / 'improvement.csv'}")
    print(f"plot: {out / 'compare' / 'compare.png'}")
    rims_runs = [r for cfg, r in runs if cfg["core"] == "rims"]
    if rims_runs:
        print(f"an episode with the RIMs activation strip: rims-rl record --model {rims_runs[0]}")
    print(f"TensorBoard curves: tensorboard --logdir {out}")
    report(out, reps=reps)  # prints the report's path
    if STUDY_REPORT.is_file():
        print(f"the published study (4 cores x 5 seeds x 3 tasks, one untuned preset): {STUDY_REPORT}")
    return summary


# ---------------------------------------------------------------- presets

def show_presets(name: str | None = None) -> None:
    """Print the preset names (with their first comment line), or the YAML text of one preset."""
    from agents.experiments.config import PRESET_DIR, list_presets, load_preset

    if name is not None:
        load_preset(name)  # UserError for an unknown name
        print((PRESET_DIR / f"{name}.yaml").read_text(), end="")
        return
    for preset in list_presets():
        first = (PRESET_DIR / f"{preset}.yaml").read_text().splitlines()[0].lstrip("# ")
        print(f"{preset:10s} {first}")


# ---------------------------------------------------------------- record

def record(
    model: str | os.PathLike,
    out: str | os.PathLike | None = None,
    shifts: str | None = None,
    seed: int = EVAL_SEED,
    deterministic: bool = False,
    max_steps: int = 500,
    fps: int = 8,
    env: str | None = None,
    device: str = "auto",
) -> Path:
    """The ``record`` command: one episode as GIF or MP4 with the RIMs activation strip under each frame."""
    from envs import parse_shifts

    from agents.experiments.record import record_episode

    model_file, run_dir = resolve_model_path(model)
    if env is None:
        if run_dir is None:
            raise UserError(f"--env is required: {model_file} does not lie in a run dir with {CONFIG_FILE}")
        env = read_run_config(run_dir)["env"]
    shift_map = parse_shifts(shifts, env)
    out_path = Path(out) if out is not None else (run_dir or model_file.parent) / "episode.gif"
    if out_path.suffix.lower() not in (".gif", ".mp4"):
        raise UserError(f"--out must end in .gif or .mp4, got {out_path.name!r}")
    if max_steps < 1 or fps < 1:
        raise UserError(f"--max-steps and --fps must be >= 1, got {max_steps} and {fps}")
    check_seed(seed)
    check_out_dir(out_path.parent, (out_path.name,))
    agent = load_model(model_file, env_id=env, device=resolve_device(device))
    with torch_threads(EVAL_THREADS):
        info = record_episode(agent, env, shift_map, out_path, seed=seed, deterministic=deterministic,
                              max_steps=max_steps, fps=fps)
    strip = "with the RIMs activation strip" if info["has_strip"] else "(no activation strip: the core is not rims)"
    mission = f", mission {' / '.join(repr(m) for m in info['missions'])}" if info["missions"] else ""
    print(f"recorded {info['steps']} steps, return {info['return']:.3g}{mission}, {strip}: {out_path}")
    return out_path
