"""Steps per second of Gymnasium environments with random actions (agentry's peer).

    python3 -m venv /tmp/peers && /tmp/peers/bin/pip install -r benches/peers/requirements.txt
    /tmp/peers/bin/python benches/peers/gym_bench.py --env CartPole-v1 --steps 200000

Prints `<number> steps/s` (one environment from gymnasium.make, its usual wrappers
included, resetting when an episode ends, as a user's loop does); with `--vector N`,
the same for gymnasium's SyncVectorEnv of N copies (steps summed over copies).
Actions are drawn before the clock starts.
"""

import argparse
import json
import platform
import time

import gymnasium as gym
import numpy as np


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--env", default="CartPole-v1",
                   choices=["CartPole-v1", "Acrobot-v1", "MountainCar-v0", "Pendulum-v1", "MountainCarContinuous-v0"])
    p.add_argument("--steps", type=int, default=200_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--vector", type=int, default=0, help="copies in a SyncVectorEnv (0: one environment)")
    a = p.parse_args()
    if a.vector:
        env = gym.make_vec(a.env, num_envs=a.vector, vectorization_mode="sync")  # a SyncVectorEnv, autoreset next step
        env.reset(seed=a.seed)
        env.action_space.seed(a.seed)
        table = [env.action_space.sample() for _ in range(1024)]
        rounds = a.steps // a.vector
        start = time.perf_counter()
        for t in range(rounds):
            env.step(table[t % 1024])
        seconds = time.perf_counter() - start
        steps = rounds * a.vector
    else:
        env = gym.make(a.env)
        env.reset(seed=a.seed)
        env.action_space.seed(a.seed)
        table = [env.action_space.sample() for _ in range(1024)]
        start = time.perf_counter()
        for t in range(a.steps):
            _, _, terminated, truncated, _ = env.step(table[t % 1024])
            if terminated or truncated:
                env.reset()
        seconds = time.perf_counter() - start
        steps = a.steps
    print(f"{steps / seconds:.0f} steps/s")
    print(json.dumps({"peer": "gymnasium", "version": gym.__version__, "numpy": np.__version__,
                      "python": platform.python_version(), "env": a.env, "vector": a.vector,
                      "env_class": type(env).__name__, "steps": steps, "seconds": seconds,
                      "steps_per_s": steps / seconds}))


if __name__ == "__main__":
    main()
