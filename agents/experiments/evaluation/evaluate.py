"""Evaluate a model over a ladder: in memory (:func:`evaluate_model`) or a run dir's model into files
(:func:`evaluate_run`: results.csv/json, the ladder plot and TensorBoard scalars)."""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import imageio.v3 as iio
from stable_baselines3.common.utils import set_random_seed
from torch.utils.tensorboard import SummaryWriter

from agents.checks import check_dir, check_episodes
from agents.experiments.baseline import baseline_cache_path, random_baseline
from agents.experiments.config import DEFAULT_EPISODES, EVAL_ENVS, EVAL_SEED
from agents.experiments.devices import resolve_device, torch_threads
from agents.experiments.evaluation.episodes import EVAL_THREADS, run_episodes
from agents.experiments.evaluation.ladder import Setting, ladder_settings
from agents.experiments.evaluation.metrics import METRICS, add_normalized_scores, success_ci_half_width, summarize
from agents.experiments.evaluation.results import Result, write_results_csv, write_results_json
from agents.experiments.evaluation.tables import print_results_table
from agents.experiments.plots import plot_returns_vs_level
from agents.experiments.runs import (CONFIG_FILE, EVAL_DIR, TB_DIR, load_model, read_run_config,
                                     resolve_model_path)
from agents.experiments.tb_tags import LADDER_IMAGE, ladder_tag
from rims_rl.errors import UserError, first_line


def evaluate_model(
    model,
    env_id: str,
    settings: list[Setting],
    episodes: int,
    seed: int = 0,
    deterministic: bool = False,
    n_envs: int = EVAL_ENVS,
    on_result: Callable[[Result], None] | None = None,
    baseline: Callable[[Setting], dict[str, Any]] | None = None,
) -> list[Result]:
    """Run every setting on the same episode seeds and return its Result.

    ``baseline(setting)`` gives the random policy's ``{"mean_return", "success_rate"}`` of a
    setting (see ``agents.experiments.baseline``); with it the normalized scores are set.
    """
    results = []
    for setting in settings:
        found = run_episodes(model, env_id, setting.shifts, episodes, seed, deterministic, n_envs)
        result = summarize(env_id, setting, found)
        if baseline is not None:
            reference = baseline(setting)
            result.random_return = reference["mean_return"]
            result.random_success_rate = reference["success_rate"]
        results.append(result)
        if on_result is not None:
            on_result(result)
    add_normalized_scores(results)
    return results


def log_results_to_tensorboard(results: list[Result], tb_dir: str | os.PathLike, step: int,
                               ladder_png: str | os.PathLike | None = None) -> Path:
    """Write one scalar per setting and metric, ``under_shift/<shift>/level<L>/<metric>``, at the training
    ``step`` (so TensorBoard never smooths across levels; evaluating later checkpoints extends each
    curve), plus the ladder plot ``ladder_png`` as the image ``under_shift/ladder`` (the group sorts after
    the learning curves': see :mod:`agents.experiments.tb_tags`)."""
    tb_dir = Path(tb_dir)
    writer = SummaryWriter(log_dir=str(tb_dir))
    try:
        for r in results:
            for metric in METRICS:
                value = getattr(r, metric)
                if value is not None:
                    writer.add_scalar(ladder_tag(r.shift, r.level, metric), value, step)
        if ladder_png is not None:
            try:
                image = iio.imread(Path(ladder_png))[..., :3]
                writer.add_image(LADDER_IMAGE, image, step, dataformats="HWC")
            except OSError:  # a full or read-only disk: the evaluation cannot finish either
                raise
            except Exception as e:  # noqa: BLE001 - the image only illustrates the scalars: never fail for it
                warn(f"the ladder image was not logged to TensorBoard ({type(e).__name__}: {first_line(e)})")
    finally:
        writer.close()
    return tb_dir


def warn(message: str) -> None:
    """One warning line on stderr."""
    print(f"warning: {message}", file=sys.stderr)


def plot_or_warn(results: list[Result], path: Path, title: str) -> Path | None:
    """The ladder plot of ``results`` at ``path``; None, with one warning line, if it cannot be drawn
    (a plot illustrates the results files, so it never fails an evaluation; an OS error, such as a full
    disk, is raised: the results cannot be written either)."""
    try:
        return plot_returns_vs_level(results, path, title)
    except OSError:  # a full or read-only disk: results.json cannot be written either; one error, not a warning
        raise
    except Exception as e:  # noqa: BLE001 - matplotlib raises many types on odd data; all mean "no plot"
        warn(f"{path} was not drawn ({type(e).__name__}: {first_line(e)}); the results files are complete")
        return None


def evaluate_run(
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
    """Evaluate ``model`` over the ladder ``shifts`` on paired episodes; write results.csv/json, a plot
    and TB scalars (what ``evaluate`` does, and a sweep's run after training).

    ``model``: a model file or a run dir. Outputs go to ``out`` (default ``<run>/eval``); the TB
    scalars to ``<run>/tb/eval`` (or ``<out>/tb``). The random-policy baseline is cached in
    ``baseline_cache`` (default ``<logdir>/<env>/random_baseline.json`` beside the env's runs for a run dir in
    the standard layout, else ``<out>/random_baseline.json``). ``results.json`` is written last, after the
    plot and TensorBoard: its presence marks a finished evaluation; a plot that cannot be drawn is one
    warning. ``device``: auto, cpu, cuda or cuda:N. Prints each setting's
    result and the table unless ``quiet``.
    """
    model_file, run_dir = resolve_model_path(model)
    if env is None:
        if run_dir is None:
            raise UserError(f"--env is required: {model_file} does not lie in a run dir with {CONFIG_FILE}")
        env = read_run_config(run_dir)["env"]
    check_episodes(episodes, seed)
    if n_envs < 1:
        raise UserError(f"--n-envs must be >= 1, got {n_envs}")
    settings = ladder_settings(env, shifts)
    out_dir = Path(out) if out is not None else (run_dir / EVAL_DIR if run_dir else model_file.parent / EVAL_DIR)
    check_dir(out_dir, "--out", ("results.csv", "results.json", "returns.png"))
    agent = load_model(model_file, env_id=env, device=resolve_device(device))
    tb_dir = run_dir / TB_DIR / "eval" if run_dir else out_dir / "tb"
    cache = Path(baseline_cache) if baseline_cache is not None else baseline_cache_path(run_dir, out_dir, env)

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
    csv_path = write_results_csv(results, out_dir)
    label = f"{run_dir.parent.name} seed {read_run_config(run_dir)['seed']}" if run_dir else model_file.name
    plot = plot_or_warn(results, out_dir / "returns.png", f"{env} - {label}")
    log_results_to_tensorboard(results, tb_dir, int(agent.num_timesteps), ladder_png=plot)
    json_path = write_results_json(results, out_dir, meta)  # last: it marks a finished evaluation
    if not quiet:
        print_results_table(results, f"{env} - {label} ({agent.num_timesteps} steps)")
        half = success_ci_half_width(results)
        if half is not None:
            print(f"largest 95% CI half-width of a success rate: {half:.3f} ({episodes} episodes per setting)")
        print(f"results: {csv_path}, {json_path}\nplot: {plot or 'none'}\nTensorBoard: tensorboard --logdir {tb_dir}")
    return results
