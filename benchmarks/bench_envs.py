"""Env throughput (steps/s of all sub-envs) of envs.make_vec_env, against SB3 and against no shift.

    python benchmarks/bench_envs.py            # Atari 8 envs (ours vs SB3) + every shift, MiniGrid 8 envs + every shift
    python benchmarks/bench_envs.py --only minigrid   # MiniGrid part only, with MiniGrid's own obs path vs ours
    python benchmarks/bench_envs.py --quick    # fewer steps (a smoke run)
    python benchmarks/bench_envs.py --learn 100000   # PPO learnability check of DEFAULT_ENV_ID
    python benchmarks/bench_envs.py --memory   # MemoryDistractors-v0: random policy per shift level, steps/s

Baselines: SB3 `make_atari_env` + SubprocVecEnv + VecFrameStack(4) on the same game with the same
preprocessing (frame skip 4 + max-pool, 84x84 gray, 30 no-ops, sticky 0.25, fire reset, episodic
life, reward clipping); and our own env without the shift. Each figure is the best of `--rounds`
timings of random actions; each round times every config in turn (interleaved), so load from other
processes on a shared CPU affects all alike; ratios compare figures measured in the same run.
Besides wall-clock steps/s it prints env steps per CPU-second (this process, all threads, plus SB3's
worker processes): on a loaded machine, 9 SB3 processes get more CPU share than one process with two
threads, so the CPU-time figure is the fairer efficiency comparison there.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable, Iterable

import numpy as np

import envs  # noqa: F401  (registers ALE ids in SubprocVecEnv workers as well)
from envs import DEFAULT_ENV_ID, MEMORY_ENV_ID, list_shifts, make_vec_env

ATARI_ID = "ALE/Breakout-v5"
SHIFT_LEVEL = 2


def cpu_seconds(venv) -> float:
    """CPU time used so far by this process (all threads) plus the venv's worker processes, if any."""
    inner = venv
    while hasattr(inner, "venv"):
        inner = inner.venv
    total = time.process_time()
    for process in getattr(inner, "processes", []):
        with open(f"/proc/{process.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
    return total


def timed(venv, actions: np.ndarray) -> tuple[float, float]:
    """(env steps per wall second, env steps per CPU second) of one pass over `actions` [steps, n]."""
    wall, cpu = time.perf_counter(), cpu_seconds(venv)
    for a in actions:
        venv.step(a)
    return actions.size / (time.perf_counter() - wall), actions.size / max(cpu_seconds(venv) - cpu, 1e-9)


def interleaved(factories: dict, vec_steps: int, rounds: int,
                reduce: Callable[[Iterable[float]], float] = max) -> dict[str, tuple[float, float]]:
    """Best-of-`rounds` (or reduce-of-rounds, e.g. statistics.median) (steps/s, steps per CPU-s) per config;
    every round times each config once, in turn, so that load from other processes on the shared CPU hits
    all configs alike."""
    venvs = {label: make() for label, make in factories.items()}
    rng = np.random.default_rng(0)
    runs: dict[str, list[tuple[float, float]]] = {label: [] for label in venvs}
    for venv in venvs.values():
        venv.reset()
    for _ in range(rounds):
        for label, venv in venvs.items():
            actions = rng.integers(0, venv.action_space.n, (vec_steps, venv.num_envs))
            runs[label].append(timed(venv, actions))
    for venv in venvs.values():
        venv.close()
    return {label: (reduce(w for w, _ in r), reduce(c for _, c in r)) for label, r in runs.items()}


def sb3_atari(n_envs: int):
    from stable_baselines3.common.env_util import make_atari_env
    from stable_baselines3.common.vec_env import SubprocVecEnv, VecFrameStack

    venv = make_atari_env(ATARI_ID, n_envs=n_envs, seed=0, vec_env_cls=SubprocVecEnv,
                          env_kwargs={"frameskip": 1, "repeat_action_probability": 0.25})
    return VecFrameStack(venv, 4)


def bench_atari(n_envs: int, vec_steps: int, rounds: int) -> None:
    print(f"Atari {ATARI_ID}, {n_envs} envs, {vec_steps} steps per timing, best of {rounds} interleaved rounds")
    factories = {
        "sb3": lambda: sb3_atari(n_envs),
        "ours": lambda: make_vec_env(ATARI_ID, n_envs, seed=0),
        "rgb": lambda: make_vec_env(ATARI_ID, n_envs, seed=0, render_mode="rgb_array"),
        "python": lambda: make_vec_env(ATARI_ID, n_envs, seed=0, backend="python"),
    }
    for name in list_shifts(ATARI_ID):
        factories[name] = lambda name=name: make_vec_env(ATARI_ID, n_envs, seed=0, shifts={name: SHIFT_LEVEL})
    fps = interleaved(factories, vec_steps, rounds)
    print("  config                                      steps/s   ratio (wall)    steps/CPU-s  ratio (CPU)     vs native (CPU)")
    ref = {"sb3": "sb3", "ours": "sb3", "rgb": "ours", "python": "ours", "flavour": "python", "sticky": "ours"}
    names = {"sb3": "SB3 make_atari_env+SubprocVecEnv+FrameStack", "ours": "ours: native C++ ALE, no shift",
             "rgb": "ours: RGB path, no shift", "python": "ours: per-env Python path, no shift"}
    for label, (wall, cpu) in fps.items():
        base = ref.get(label, "rgb")
        name = names.get(label, f"shift {label}={SHIFT_LEVEL}")
        print(f"  {name:44s} {wall:6.0f}   {wall / fps[base][0]:.2f}x {base:8s} {cpu:8.0f}     {cpu / fps[base][1]:.2f}x {base:8s}"
              f"  {cpu / fps['ours'][1]:.2f}x")


def bench_minigrid(n_envs: int, vec_steps: int, rounds: int, env_id: str = DEFAULT_ENV_ID) -> None:
    print(f"MiniGrid {env_id}, {n_envs} envs (DummyVecEnv), {vec_steps} steps per timing, "
          f"best of {rounds} interleaved rounds")
    factories = {"none": lambda: make_vec_env(env_id, n_envs, seed=0)}
    for name in list_shifts(env_id):
        factories[name] = lambda name=name: make_vec_env(env_id, n_envs, seed=0, shifts={name: SHIFT_LEVEL})
    fps = interleaved(factories, vec_steps, rounds)
    print("  config                     steps/s  ratio (wall)  steps/CPU-s  ratio (CPU)")
    for label, (wall, cpu) in fps.items():
        name = "no shift" if label == "none" else f"shift {label}={SHIFT_LEVEL}"
        print(f"  {name:26s} {wall:6.0f}   {wall / fps['none'][0]:.2f}x none    {cpu:8.0f}     {cpu / fps['none'][1]:.2f}x none")


def gen_obs_micros(venv, vec_steps: int) -> tuple[float, float]:
    """(MiniGrid's gen_obs, ours) microseconds per call, both timed on the same states of a random rollout."""
    from minigrid.minigrid_env import MiniGridEnv

    rng, slow, fast = np.random.default_rng(1), 0.0, 0.0
    venv.reset()
    for _ in range(vec_steps):
        venv.step(rng.integers(0, venv.action_space.n, venv.num_envs))
        for env in venv.envs:
            base = env.unwrapped
            start = time.perf_counter()
            MiniGridEnv.gen_obs(base)
            middle = time.perf_counter()
            base.gen_obs()
            slow, fast = slow + middle - start, fast + time.perf_counter() - middle
    calls = vec_steps * venv.num_envs
    return slow / calls * 1e6, fast / calls * 1e6


def bench_minigrid_obs(n_envs: int, vec_steps: int, rounds: int) -> None:
    """MiniGrid's own observation path against ours (FastSymbolicObs, IntActions) on DoorKey-8x8."""
    from envs.minigrid import make_minigrid_vec_env

    env_id = "MiniGrid-DoorKey-8x8-v0"
    print(f"MiniGrid {env_id}, {n_envs} envs (DummyVecEnv), {vec_steps} steps per timing, "
          f"median of {rounds} interleaved rounds")
    factories = {
        "minigrid": lambda: make_minigrid_vec_env(env_id, n_envs, 0, {}, fast_obs=False, int_actions=False),
        "fast_obs": lambda: make_minigrid_vec_env(env_id, n_envs, 0, {}, int_actions=False),
        "ours": lambda: make_minigrid_vec_env(env_id, n_envs, 0, {}),
    }
    names = {"minigrid": "MiniGrid gen_obs, np.int64 actions", "fast_obs": "FastSymbolicObs only",
             "ours": "ours: FastSymbolicObs + IntActions"}
    fps = interleaved(factories, vec_steps, rounds, reduce=statistics.median)
    print("  config                               steps/s  ratio (wall)      steps/CPU-s  ratio (CPU)")
    for label, (wall, cpu) in fps.items():
        print(f"  {names[label]:36s} {wall:6.0f}   {wall / fps['minigrid'][0]:.2f}x minigrid  {cpu:8.0f}     "
              f"{cpu / fps['minigrid'][1]:.2f}x minigrid")
    slow, fast = gen_obs_micros(factories["ours"](), vec_steps)
    print(f"  gen_obs per call: MiniGrid {slow:.1f} us, ours {fast:.1f} us ({slow / fast:.1f}x)")


def grid_cnn_class():
    """A small CNN over the symbolic [3, 7, 7] view (2x2 kernels, as common for MiniGrid)."""
    import torch
    from torch import nn
    from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

    class GridCNN(BaseFeaturesExtractor):
        def __init__(self, observation_space, features_dim: int = 64):
            super().__init__(observation_space, features_dim)
            channels = observation_space.shape[0]
            self.net = nn.Sequential(
                nn.Conv2d(channels, 16, 2), nn.ReLU(), nn.Conv2d(16, 32, 2), nn.ReLU(),
                nn.Conv2d(32, 64, 2), nn.ReLU(), nn.Flatten())
            with torch.no_grad():
                size = self.net(torch.zeros(1, *observation_space.shape)).shape[1]
            self.head = nn.Sequential(nn.Linear(size, features_dim), nn.ReLU())

        def forward(self, obs):
            return self.head(self.net(obs.float()))

    return GridCNN


def episodes_of(venv, policy, count: int) -> list[dict]:
    """info["episode"] of the first `count` finished episodes under policy(obs) -> actions."""
    obs, episodes = venv.reset(), []
    while len(episodes) < count:
        obs, _, _, infos = venv.step(policy(obs))
        episodes += [info["episode"] for info in infos if "episode" in info]
    return episodes[:count]


def summary(episodes: list[dict]) -> str:
    return (f"success {np.mean([e['r'] > 0 for e in episodes]):.2f}, return {np.mean([e['r'] for e in episodes]):.3f}, "
            f"length {np.mean([e['l'] for e in episodes]):.1f}")


def learnability(total_steps: int) -> None:
    """SB3 PPO with a small CNN (8 envs) on DEFAULT_ENV_ID; success rate unshifted and per shift."""
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import VecTransposeImage

    torch.set_num_threads(1)  # the CPU is shared; more threads only spin
    venv = make_vec_env(DEFAULT_ENV_ID, 8, seed=0)
    model = PPO("CnnPolicy", venv, n_steps=128, batch_size=256, n_epochs=4, learning_rate=5e-4, ent_coef=0.01,
                policy_kwargs=dict(normalize_images=False, features_extractor_class=grid_cnn_class(),
                                   net_arch=[64]), seed=0, device="cpu")
    start = time.perf_counter()
    model.learn(total_steps)
    seconds = time.perf_counter() - start
    print(f"SB3 PPO (small CNN, 8 envs) on {DEFAULT_ENV_ID}: {total_steps} steps in {seconds:.0f} s "
          f"({total_steps / seconds:.0f} steps/s); 200 evaluation episodes each (seed 1000)")
    rng = np.random.default_rng(0)
    random_env = make_vec_env(DEFAULT_ENV_ID, 8, seed=1000, training=False)
    print(f"  random policy                 : {summary(episodes_of(random_env, lambda o: rng.integers(0, 3, 8), 200))}")
    for shifts in [None, *[{name: level} for name in list_shifts(DEFAULT_ENV_ID) for level in (1, 3)]]:
        for deterministic in (True, False):
            env = VecTransposeImage(make_vec_env(DEFAULT_ENV_ID, 8, seed=1000, shifts=shifts, training=False))
            policy = lambda o: model.predict(o, deterministic=deterministic)[0]  # noqa: E731
            label = f"{str(shifts or 'no shift'):22s} {'greedy ' if deterministic else 'sampled'}"
            print(f"  {label}: {summary(episodes_of(env, policy, 200))}")


def random_policy_success(env_id: str, episodes: int, n_envs: int) -> None:
    """Success rate (with a 95% Wilson interval), return and length of a uniformly random policy on `env_id`,
    unshifted and at every level of every shift (evaluation seeds from 1000, as the evaluation uses)."""
    from agents.experiments.evaluation.metrics import wilson_interval

    print(f"random policy on {env_id}: {episodes} episodes per setting, {n_envs} envs, seed 1000")
    settings = [None, *[{name: level} for name, info in list_shifts(env_id).items() for level in sorted(info.levels)
                        if level > 0]]
    for shifts in settings:
        venv = make_vec_env(env_id, n_envs, seed=1000, shifts=shifts, training=False)
        rng = np.random.default_rng(0)
        found = episodes_of(venv, lambda o: rng.integers(0, venv.action_space.n, n_envs), episodes)
        venv.close()
        k = sum(e["r"] > 0 for e in found)
        low, high = wilson_interval(k, len(found))
        print(f"  {str(shifts or 'no shift'):26s}: success {k / len(found):.3f} [{low:.3f}, {high:.3f}], "
              f"return {np.mean([e['r'] for e in found]):.4f}, length {np.mean([e['l'] for e in found]):.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few steps, one repeat (smoke run)")
    parser.add_argument("--n-envs", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", choices=("atari", "minigrid"), default=None)
    parser.add_argument("--learn", type=int, default=0, metavar="STEPS", help="run the PPO learnability check instead")
    parser.add_argument("--memory", action="store_true",
                        help=f"{MEMORY_ENV_ID} only: random-policy success per shift level, then steps/s")
    parser.add_argument("--episodes", type=int, default=1000, help="episodes per setting of --memory")
    args = parser.parse_args()
    if args.learn:
        learnability(args.learn)
        return
    if args.memory:
        print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; 2 shared CPU cores")
        random_policy_success(MEMORY_ENV_ID, 200 if args.quick else args.episodes, args.n_envs)
        bench_minigrid(args.n_envs, 100 if args.quick else 500, 1 if args.quick else args.rounds, MEMORY_ENV_ID)
        return
    rounds = 1 if args.quick else args.rounds
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; shifts at level {SHIFT_LEVEL}; 2 shared CPU cores")
    if args.only in (None, "atari"):
        bench_atari(args.n_envs, 50 if args.quick else 300, rounds)
    if args.only in (None, "minigrid"):
        bench_minigrid(args.n_envs, 100 if args.quick else 500, rounds)
        bench_minigrid_obs(args.n_envs, 100 if args.quick else 500, rounds)


if __name__ == "__main__":
    main()
