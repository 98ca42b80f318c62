"""Steps per second of EnvPool's synchronous vector environments (agentry's peer).

    /tmp/peers/bin/python benches/peers/envpool_bench.py --env CartPole-v1 --num-envs 8 --threads 2

Prints `<number> steps/s` (environment steps summed over copies; EnvPool auto-resets),
then a JSON line of details. Actions are drawn before the clock starts.
"""

import argparse
import json
import platform
import time

import envpool
import numpy as np


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--env", default="CartPole-v1")
    p.add_argument("--num-envs", type=int, default=8)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", type=int, default=1_000_000)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    env = envpool.make_gymnasium(a.env, num_envs=a.num_envs, batch_size=a.num_envs, num_threads=a.threads, seed=a.seed)
    env.reset()
    rng = np.random.default_rng(a.seed)
    space = env.action_space
    if hasattr(space, "n"):  # Discrete: EnvPool takes int32 actions, so convert once here, not every step
        table = rng.integers(0, space.n, size=(1024, a.num_envs)).astype(np.int32)
    else:  # Box (Pendulum-v1, MountainCarContinuous-v0)
        table = rng.uniform(space.low, space.high, size=(1024, a.num_envs, *space.shape)).astype(space.dtype)
    rounds = max(1, a.steps // a.num_envs)
    start = time.perf_counter()
    for t in range(rounds):
        env.step(table[t % 1024])
    seconds = time.perf_counter() - start
    steps = rounds * a.num_envs
    print(f"{steps / seconds:.0f} steps/s")
    print(json.dumps({"peer": "envpool", "version": envpool.__version__, "numpy": np.__version__,
                      "python": platform.python_version(), "env": a.env, "num_envs": a.num_envs,
                      "threads": a.threads, "steps": steps, "seconds": seconds, "steps_per_s": steps / seconds}))


if __name__ == "__main__":
    main()
