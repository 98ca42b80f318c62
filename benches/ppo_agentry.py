#!/usr/bin/env python3
"""agentry's side of the CartPole PPO comparison (benches/peers/ppo_sb3.py and
ppo_cleanrl.py are the peers): runs `agent train --env cartpole` (the rl-zoo preset)
for each seed and reports, like the peer scripts, the wall-clock to 100k env steps and
the first env step (with its wall-clock) at which the mean return of the last 100
episodes is >= 475 over a full 100-episode window.

    cargo build --release --bin agent
    python3 benches/ppo_agentry.py --seeds 1,2,3 [--env cartpole] [--steps 100000]

Standard library only. The wall-clock is the process's, measured here, so it includes
start-up; `wall_time_s` from metrics.csv gives the in-run time of each row.
"""
import argparse
import csv
import json
import os
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--seeds", default="1,2,3")
    p.add_argument("--env", default="cartpole")
    p.add_argument("--steps", type=int, default=100_000)
    p.add_argument("--threshold", type=float, default=475.0)
    p.add_argument("--agent", default=os.path.join(ROOT, "target", "release", "agent"))
    p.add_argument("--out", default=None, help="write the results as JSON here")
    p.add_argument("--set", action="append", default=[], help="extra --set K=V for agent train")
    args = p.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in [int(s) for s in args.seeds.split(",")]:
            run = os.path.join(tmp, f"seed{seed}")
            cmd = [args.agent, "train", "--env", args.env, "--seed", str(seed),
                   "--steps", str(args.steps), "--out", run, "-q"]
            for s in args.set:
                cmd += ["--set", s]
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            wall = time.perf_counter() - t0
            first_step, first_wall = None, None
            with open(os.path.join(run, "metrics.csv")) as f:
                for row in csv.DictReader(f):
                    ret = row["episode_return_mean"]
                    if ret and int(float(row["episodes"])) >= 100 and float(ret) >= args.threshold:
                        first_step = int(float(row["env_steps"]))
                        first_wall = float(row["wall_time_s"])
                        break
            with open(os.path.join(run, "summary.json")) as f:
                summary = json.load(f)
            r = {
                "seed": seed,
                "wall_s": round(wall, 2),
                "in_run_wall_s": round(summary["wall_time_s"], 2),
                "env_steps": summary["env_steps"],
                "first_step_mean100_ge_threshold": first_step,
                "first_wall_s": None if first_wall is None else round(first_wall, 2),
                "last_return_mean": summary["last_episode_return_mean"],
            }
            print(json.dumps(r), flush=True)
            results.append(r)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
