"""Training speed of agents.RecurrentPPO per core against sb3-contrib's RecurrentPPO, same run.

Same env, hyperparameters and feature CNN for everyone: 8 envs x 128 steps, 4 epochs, 4 minibatches
(sb3-contrib: batch_size 256), Adam 2.5e-4. sb3-contrib runs its CnnLstmPolicy with an LSTM of 256
units (its default: separate actor and critic LSTMs; also shown with shared_lstm=True), and with an
LSTM of K*H = 384 units as the same-width baseline of rims; our lstm/gru have 256 units, rims uses
RIMsConfig defaults (K=6, k=4, H=64). MiniGrid uses the small grid CNN
(agents.extractors.GridCNNExtractor, no /255), Breakout the NatureCNN. fps = env steps / wall
seconds of ``learn`` after one warm-up iteration (rollouts + updates); cpu_fps = env steps / CPU seconds
of this process (less sensitive to other jobs on a shared machine; threads add up); update = wall
seconds of one PPO update (4 epochs), the part the recurrent implementation decides, with the speed-up
over sb3-contrib in brackets.

Each ``rims`` line also shows its fps against our ``lstm`` of the same state size (K*H units), run
in the same invocation (the goal: within 2x with full BPTT).

Vector memory task (``--tasks vector``): CartPole without velocities (positions only, so a policy
needs memory), with sb3-contrib's own RecurrentPPO performance-test settings: VecNormalize
(observations), 8 envs x 128 steps, batch 256 (2 whole sequences), 10 epochs, lr 7e-4, GAE 0.98,
max_grad_norm 1, full BPTT; sb3-contrib MlpLstmPolicy with 64 units, our lstm with 64 units, our
rims with 4 RIMs of 16 (k=2), the same state size.

    python benchmarks/bench_ppo.py            # DoorKey-8x8 (4 iterations) + Breakout (1 iteration)
    python benchmarks/bench_ppo.py --quick    # DoorKey-8x8 only, 2 iterations
    python benchmarks/bench_ppo.py --tasks doorkey vector --threads 1 --bptt-lengths 128
    python benchmarks/bench_ppo.py --device cuda
"""
from __future__ import annotations

import argparse
import time
import warnings
from typing import Callable

import gymnasium as gym
import numpy as np
import torch
from gymnasium.envs.classic_control import CartPoleEnv
from sb3_contrib import RecurrentPPO as ContribRecurrentPPO
from stable_baselines3.common.env_util import make_vec_env as sb3_make_vec_env
from stable_baselines3.common.vec_env import VecNormalize

from agents import RecurrentPPO
from agents.extractors import GridCNNExtractor, NatureCNNExtractor
from rims_rl import RIMsConfig
from envs import make_vec_env

N_ENVS, N_STEPS, N_EPOCHS, N_MINIBATCHES = 8, 128, 4, 4
COMMON = dict(learning_rate=2.5e-4, n_steps=N_STEPS, n_epochs=N_EPOCHS, gamma=0.99, gae_lambda=0.95,
              clip_range=0.1, ent_coef=0.01, vf_coef=0.5, max_grad_norm=0.5, seed=0, device="cpu")
ENVS = {
    "doorkey": ("MiniGrid-DoorKey-8x8-v0", GridCNNExtractor, 128, False),
    "breakout": ("ALE/Breakout-v5", NatureCNNExtractor, 512, True),
}


VECTOR = dict(n_steps=128, batch_size=256, n_epochs=10, learning_rate=7e-4, gae_lambda=0.98, max_grad_norm=1.0,
              seed=1)
VECTOR_RIMS = dict(num_units=4, k=2, unit_size=16)


class CartPoleNoVelEnv(CartPoleEnv):
    """CartPole with the velocities removed from the observation (sb3-contrib's memory test env)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        high = np.array([self.x_threshold * 2, self.theta_threshold_radians * 2], dtype=np.float32)
        self.observation_space = gym.spaces.Box(-high, high, dtype=np.float32)

    def reset(self, **kwargs):
        obs, info = super().reset(**kwargs)
        return obs[[0, 2]], info

    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(action)
        return obs[[0, 2]], reward, terminated, truncated, info


def run_vector(iterations: int, cores: list[str], device: str) -> None:
    """The vector memory task: sb3-contrib MlpLstm-64 against our cores of state size 64."""
    env = VecNormalize(sb3_make_vec_env(lambda: gym.wrappers.TimeLimit(CartPoleNoVelEnv(), 500), n_envs=N_ENVS,
                                        seed=1), norm_reward=False)
    runs: list[tuple[str, Callable]] = [("sb3-contrib MlpLstm-64", lambda: ContribRecurrentPPO(
        "MlpLstmPolicy", env, device=device, policy_kwargs=dict(
            net_arch=dict(vf=[64], pi=[]), lstm_hidden_size=64, ortho_init=False, enable_critic_lstm=True),
        **VECTOR))]
    for core in cores:
        kwargs = {"lstm": {"hidden_size": 64}, "gru": {"hidden_size": 64}, "rims": VECTOR_RIMS}.get(core)
        runs.append((f"ours core={core}" + ("-64" if core in ("lstm", "gru") else " 4x16 k=2" if core == "rims" else ""),
                     lambda c=core, k=kwargs: RecurrentPPO("MlpPolicy", env, core=c, core_kwargs=k, device=device,
                                                           **VECTOR)))
    print(f"CartPole without velocities: {N_ENVS} envs x 128 steps, batch 256, 10 epochs, full BPTT, "
          f"{iterations} timed iterations, {torch.get_num_threads()} threads, {device}; ratios against "
          f"sb3-contrib", flush=True)
    results = {}
    for label, build in runs:
        model = build()
        results[label] = result = measure(model, iterations)
        (fps, cpu_fps, update), (base_fps, base_cpu, base_update) = result, results["sb3-contrib MlpLstm-64"]
        extra = ""
        if label.startswith("ours core=rims") and "ours core=lstm-64" in results:
            extra = f"  fps vs our lstm-64 {fps / results['ours core=lstm-64'][0]:4.2f}x"
        print(f"  {label:40s} fps={fps:7.1f} ({fps / base_fps:4.2f}x)  cpu_fps={cpu_fps:7.1f} "
              f"({cpu_fps / base_cpu:4.2f}x)  update={update:5.2f} s ({base_update / update:4.2f}x){extra}"
              f"{rims_path(model)}", flush=True)
    env.close()


def rims_path(model) -> str:
    """'  path=cpp' for a rims model (which RIMs implementation ran: rims_rl.RIMs.last_path), else ''."""
    cores = [m for m in model.policy.modules() if type(m).__name__ == "RIMs"]
    return f"  path={cores[0].last_path}" if cores else ""


def contrib_model(env, extractor, features_dim, normalize, shared: bool, width: int = 256):
    policy_kwargs = dict(
        features_extractor_class=extractor, features_extractor_kwargs={"features_dim": features_dim},
        normalize_images=normalize, net_arch=[], lstm_hidden_size=width, shared_lstm=shared,
        enable_critic_lstm=not shared,
    )
    return ContribRecurrentPPO("CnnLstmPolicy", env, batch_size=N_ENVS * N_STEPS // N_MINIBATCHES,
                               policy_kwargs=policy_kwargs, **COMMON)


def our_model(env, core: str, features_dim: int, bptt_length: int | None = None, width: int = 256):
    core_kwargs = {"hidden_size": width} if core in ("lstm", "gru") else None
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
    """One line per model: fps, cpu_fps and update time, each as a ratio to the sb3-contrib run with
    an LSTM of the same width (256 for lstm/gru/none; K*H for rims, which also shows fps vs LSTM-256)."""
    env_id, extractor, features_dim, normalize = ENVS[name]
    env = make_vec_env(env_id, n_envs=N_ENVS, seed=0)
    rims_config = RIMsConfig()
    rims_width = rims_config.num_units * rims_config.unit_size

    def contrib(width: int, shared: bool = False) -> Callable:
        return lambda: contrib_model(env, extractor, features_dim, normalize, shared, width)

    # (label, builder, width it is compared with, True if it is the baseline of that width)
    runs: list[tuple[str, Callable, int, bool]] = [("sb3-contrib CnnLstm (actor+critic LSTMs)", contrib(256), 256, True)]
    if "rims" in cores:
        runs.append((f"sb3-contrib CnnLstm LSTM-{rims_width}", contrib(rims_width), rims_width, True))
    if with_shared:
        runs.append(("sb3-contrib CnnLstm shared_lstm", contrib(256, shared=True), 256, False))
    for core in cores:
        for length in bptt_lengths if core != "none" else [N_STEPS]:
            label = f"ours core={core}" + (f" bptt={length}" if length < N_STEPS else "")
            width = rims_width if core == "rims" else 256
            runs.append((label, lambda c=core, n=length: our_model(env, c, features_dim, n), width, False))
            if core == "lstm" and "rims" in cores:  # the same state size as rims
                runs.append((f"ours core=lstm-{rims_width}" + (f" bptt={length}" if length < N_STEPS else ""),
                             lambda n=length: our_model(env, "lstm", features_dim, n, rims_width), rims_width, False))
    print(f"{env_id}: {N_ENVS} envs x {N_STEPS} steps, {N_EPOCHS} epochs, {N_MINIBATCHES} minibatches, "
          f"{iterations} timed iterations, {torch.get_num_threads()} threads; ratios against the "
          f"sb3-contrib run of the same width", flush=True)
    baselines: dict[int, tuple[float, float, float]] = {}
    ours: dict[str, tuple[float, float, float]] = {}
    for label, build, width, is_baseline in runs:
        model = build()
        result = measure(model, iterations)
        ours[label] = result
        if is_baseline:
            baselines[width] = result
        (fps, cpu_fps, update), (base_fps, base_cpu, base_update) = result, baselines[width]
        extra = f"  fps vs LSTM-256 {fps / baselines[256][0]:4.2f}x" if width != 256 else ""
        same = label.replace("core=rims", f"core=lstm-{rims_width}")
        if label.startswith("ours core=rims") and same in ours:
            extra += f"  fps vs our lstm-{rims_width} {fps / ours[same][0]:4.2f}x"
        print(f"  {label:40s} fps={fps:6.1f} ({fps / base_fps:4.2f}x)  cpu_fps={cpu_fps:6.1f} "
              f"({cpu_fps / base_cpu:4.2f}x)  update={update:5.2f} s ({base_update / update:4.2f}x){extra}"
              f"{rims_path(model)}", flush=True)
    env.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="DoorKey only, 2 timed iterations")
    parser.add_argument("--cores", nargs="+", default=["lstm", "gru", "rims", "none"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=None, help="timed iterations on DoorKey")
    parser.add_argument("--bptt-lengths", type=int, nargs="+", default=[N_STEPS, 16],
                        help=f"bptt_length values for our recurrent cores ({N_STEPS} = whole rollouts)")
    parser.add_argument("--tasks", nargs="+", choices=["doorkey", "breakout", "vector"], default=None,
                        help="default: doorkey breakout (--quick: doorkey)")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    args = parser.parse_args()
    if args.device not in ("cpu", "cuda") or (args.device == "cuda" and not torch.cuda.is_available()):
        parser.exit(2, f"bench_ppo.py: --device {args.device!r} is invalid here: valid values are cpu"
                       f"{', cuda' if torch.cuda.is_available() else ' (no CUDA device found)'}\n")
    COMMON["device"] = args.device
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", category=UserWarning)
    tasks = args.tasks or (["doorkey"] if args.quick else ["doorkey", "breakout"])
    if "doorkey" in tasks:
        run("doorkey", args.iterations or (2 if args.quick else 4), args.cores, not args.quick, args.bptt_lengths)
    if "vector" in tasks:
        run_vector(args.iterations or (2 if args.quick else 4), [c for c in args.cores if c != "none"], args.device)
    if "breakout" in tasks:
        run("breakout", 1, [c for c in args.cores if c != "gru"], False, args.bptt_lengths)


if __name__ == "__main__":
    main()
