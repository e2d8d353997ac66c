"""Training speed of agents.RecurrentPPO per core against sb3-contrib's RecurrentPPO, same run.

Same env, hyperparameters and feature CNN for everyone: 8 envs x 128 steps, 4 epochs, 4 minibatches
(sb3-contrib: batch_size 256), Adam 2.5e-4. sb3-contrib runs its CnnLstmPolicy with an LSTM of 256
units (its default: separate actor and critic LSTMs; also shown with shared_lstm=True); our lstm/gru
have 256 units, rims uses RIMsConfig defaults (K=6, k=4, H=64). MiniGrid uses the small grid CNN
(agents.extractors.GridCNNExtractor, no /255), Breakout the NatureCNN. fps = env steps / wall
seconds of ``learn`` after one warm-up iteration (rollouts + updates); cpu_fps = env steps / CPU seconds
of this process (less sensitive to other jobs on a shared machine; threads add up); update = wall
seconds of one PPO update (4 epochs), the part the recurrent implementation decides, with the speed-up
over sb3-contrib in brackets.

    python benchmarks/bench_ppo.py            # DoorKey-8x8 (4 iterations) + Breakout (1 iteration)
    python benchmarks/bench_ppo.py --quick    # DoorKey-8x8 only, 2 iterations
"""
from __future__ import annotations

import argparse
import time
import warnings
from typing import Callable

import torch
from sb3_contrib import RecurrentPPO as ContribRecurrentPPO

from agents import RecurrentPPO
from agents.extractors import GridCNNExtractor, NatureCNNExtractor
from envs import make_vec_env

N_ENVS, N_STEPS, N_EPOCHS, N_MINIBATCHES = 8, 128, 4, 4
COMMON = dict(learning_rate=2.5e-4, n_steps=N_STEPS, n_epochs=N_EPOCHS, gamma=0.99, gae_lambda=0.95,
              clip_range=0.1, ent_coef=0.01, vf_coef=0.5, max_grad_norm=0.5, seed=0, device="cpu")
ENVS = {
    "doorkey": ("MiniGrid-DoorKey-8x8-v0", GridCNNExtractor, 128, False),
    "breakout": ("ALE/Breakout-v5", NatureCNNExtractor, 512, True),
}


def contrib_model(env, extractor, features_dim, normalize, shared: bool):
    policy_kwargs = dict(
        features_extractor_class=extractor, features_extractor_kwargs={"features_dim": features_dim},
        normalize_images=normalize, net_arch=[], lstm_hidden_size=256, shared_lstm=shared,
        enable_critic_lstm=not shared,
    )
    return ContribRecurrentPPO("CnnLstmPolicy", env, batch_size=N_ENVS * N_STEPS // N_MINIBATCHES,
                               policy_kwargs=policy_kwargs, **COMMON)


def our_model(env, core: str, features_dim: int, bptt_length: int | None = None):
    core_kwargs = {"hidden_size": 256} if core in ("lstm", "gru") else None
    return RecurrentPPO("CnnPolicy", env, core=core, core_kwargs=core_kwargs, n_minibatches=N_MINIBATCHES,
                        bptt_length=bptt_length, policy_kwargs={"features_dim": features_dim}, **COMMON)


def measure(model, iterations: int) -> tuple[float, float, float]:
    """(fps, cpu_fps, wall seconds of one update) over `iterations` rollouts after a warm-up one."""
    update_seconds = [0.0]
    train = model.train

    def timed_train() -> None:
        start = time.perf_counter()
        train()
        update_seconds[0] += time.perf_counter() - start

    model.learn(N_ENVS * N_STEPS)
    model.train = timed_train
    update_seconds[0] = 0.0
    start, cpu_start = time.perf_counter(), time.process_time()
    model.learn(iterations * N_ENVS * N_STEPS, reset_num_timesteps=False)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    steps = iterations * N_ENVS * N_STEPS
    return steps / seconds, steps / cpu_seconds, update_seconds[0] / iterations


def run(name: str, iterations: int, cores: list[str], with_shared: bool, bptt_lengths: list[int]) -> None:
    env_id, extractor, features_dim, normalize = ENVS[name]
    env = make_vec_env(env_id, n_envs=N_ENVS, seed=0)
    runs: list[tuple[str, Callable]] = [
        ("sb3-contrib CnnLstm (actor+critic LSTMs)", lambda: contrib_model(env, extractor, features_dim, normalize, False))
    ]
    if with_shared:
        runs.append(("sb3-contrib CnnLstm shared_lstm", lambda: contrib_model(env, extractor, features_dim, normalize, True)))
    for core in cores:
        for length in bptt_lengths if core != "none" else [N_STEPS]:
            label = f"ours core={core}" + (f" bptt={length}" if length < N_STEPS else "")
            runs.append((label, lambda c=core, n=length: our_model(env, c, features_dim, n)))
    baseline = cpu_baseline = update_baseline = None
    print(f"{env_id}: {N_ENVS} envs x {N_STEPS} steps, {N_EPOCHS} epochs, {N_MINIBATCHES} minibatches, "
          f"{iterations} timed iterations, {torch.get_num_threads()} threads", flush=True)
    for label, build in runs:
        fps, cpu_fps, update = measure(build(), iterations)
        baseline, cpu_baseline = baseline or fps, cpu_baseline or cpu_fps
        update_baseline = update_baseline or update
        print(f"  {label:40s} fps={fps:6.1f} ({fps / baseline:4.2f}x)  cpu_fps={cpu_fps:6.1f} "
              f"({cpu_fps / cpu_baseline:4.2f}x)  update={update:5.2f} s ({update_baseline / update:4.2f}x)",
              flush=True)
    env.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="DoorKey only, 2 timed iterations")
    parser.add_argument("--cores", nargs="+", default=["lstm", "gru", "rims", "none"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=None, help="timed iterations on DoorKey")
    parser.add_argument("--bptt-lengths", type=int, nargs="+", default=[N_STEPS, 16],
                        help=f"bptt_length values for our recurrent cores ({N_STEPS} = whole rollouts)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", category=UserWarning)
    run("doorkey", args.iterations or (2 if args.quick else 4), args.cores, not args.quick, args.bptt_lengths)
    if not args.quick:
        run("breakout", 1, [c for c in args.cores if c != "gru"], False, args.bptt_lengths)


if __name__ == "__main__":
    main()
