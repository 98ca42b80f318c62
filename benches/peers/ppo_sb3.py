"""Stable-Baselines3 PPO on CartPole-v1 with rl-zoo3's preset (agentry's PPO peer).

    python3 -m venv /tmp/ppovenv && /tmp/ppovenv/bin/pip install -r benches/peers/requirements-ppo.txt
    /tmp/ppovenv/bin/python benches/peers/ppo_sb3.py --seeds 1,2,3 --steps 100000 --out results-sb3.json

Hyperparameters are rl-zoo3's `CartPole-v1` entry in `hyperparams/ppo.yml` (rl-zoo3 2.9.2):
n_envs 8, MlpPolicy, n_steps 32, batch_size 256, gae_lambda 0.8, gamma 0.98, n_epochs 20,
ent_coef 0.0, learning_rate lin_0.001, clip_range lin_0.2, n_timesteps 1e5. Everything else is
SB3's default (vf_coef 0.5, max_grad_norm 0.5, advantage normalisation, no value clipping,
separate 64-64 tanh actor and critic, orthogonal init, Adam eps 1e-5). The environments are
`make_vec_env` (a DummyVecEnv of Monitor-wrapped envs), as rl-zoo3 builds them.

Per seed: wall-clock seconds of `learn()` (SB3 finishes the rollout it is in, so 100,000 requested
steps are 391 rollouts of 256 = 100,096 steps), and the first environment step (summed over the 8
copies) at which the mean return of the last 100 finished episodes (a full window of 100) is >= 475,
with the wall-clock seconds at that point (null if never). The clock starts just before `learn()`
(model and environments are built before it).
"""

import argparse
import collections
import json
import platform
import time

import gymnasium as gym
import numpy as np
import stable_baselines3
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env

ENV_ID = "CartPole-v1"
TARGET = 475.0
WINDOW = 100


def linear(initial):
    """rl-zoo3's `lin_<x>`: the value times SB3's progress_remaining (1 at the start, 0 at the end)."""
    return lambda progress_remaining: progress_remaining * initial


PRESET = dict(
    n_steps=32,
    batch_size=256,
    gae_lambda=0.8,
    gamma=0.98,
    n_epochs=20,
    ent_coef=0.0,
)
N_ENVS = 8


class SolveTracker(BaseCallback):
    """Collects finished episodes' returns from Monitor's `info["episode"]` after every vector step."""

    def __init__(self):
        super().__init__()
        self.t0 = None  # set by the caller just before learn()
        self.window = collections.deque(maxlen=WINDOW)
        self.episodes = 0
        self.solved_step = None
        self.solved_seconds = None

    def _on_step(self):
        for info in self.locals["infos"]:
            ep = info.get("episode")
            if ep is None:
                continue
            self.episodes += 1
            self.window.append(float(ep["r"]))
            if (self.solved_step is None and len(self.window) == WINDOW
                    and np.mean(self.window) >= TARGET):
                self.solved_step = int(self.num_timesteps)
                self.solved_seconds = time.perf_counter() - self.t0
        return True


def run(seed, steps, threads):
    torch.set_num_threads(threads)
    env = make_vec_env(ENV_ID, n_envs=N_ENVS, seed=seed)
    model = PPO("MlpPolicy", env, learning_rate=linear(1e-3), clip_range=linear(0.2),
                seed=seed, device="cpu", verbose=0, **PRESET)
    tracker = SolveTracker()
    tracker.t0 = time.perf_counter()
    model.learn(total_timesteps=steps, callback=tracker)
    seconds = time.perf_counter() - tracker.t0
    env.close()
    last = list(tracker.window)
    return {
        "seed": seed,
        "steps": int(model.num_timesteps),
        "seconds": seconds,
        "steps_per_s": model.num_timesteps / seconds,
        "solved_step": tracker.solved_step,
        "solved_seconds": tracker.solved_seconds,
        "episodes": tracker.episodes,
        "final_mean_return_last100": float(np.mean(last)) if last else None,
        "final_window_len": len(last),
    }


def fmt(r):
    solved = ("never" if r["solved_step"] is None
              else f"step {r['solved_step']} ({r['solved_seconds']:.2f} s)")
    return (f"sb3 seed {r['seed']}: {r['steps']} steps in {r['seconds']:.2f} s "
            f"({r['steps_per_s']:.0f} steps/s); mean100>=475 at {solved}; "
            f"{r['episodes']} episodes, last-100 mean {r['final_mean_return_last100']}")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--seeds", default="1,2,3", help="comma-separated seeds")
    p.add_argument("--steps", type=int, default=100_000)
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    p.add_argument("--out", default=None, help="JSON file to write")
    a = p.parse_args()
    seeds = [int(s) for s in a.seeds.split(",") if s]
    runs = []
    for seed in seeds:
        r = run(seed, a.steps, a.threads)
        print(fmt(r), flush=True)
        runs.append(r)
    doc = {
        "peer": "stable-baselines3 PPO", "env": ENV_ID, "requested_steps": a.steps,
        "versions": {"stable_baselines3": stable_baselines3.__version__, "torch": torch.__version__,
                     "gymnasium": gym.__version__, "numpy": np.__version__,
                     "python": platform.python_version()},
        "threads": a.threads, "device": "cpu",
        "hyperparameters": dict(PRESET, n_envs=N_ENVS, policy="MlpPolicy",
                                learning_rate="lin_0.001", clip_range="lin_0.2"),
        "target": {"mean_return": TARGET, "window": WINDOW},
        "runs": runs,
    }
    if a.out:
        with open(a.out, "w") as f:
            json.dump(doc, f, indent=2)
            f.write("\n")


if __name__ == "__main__":
    main()
