#!/usr/bin/env python3
"""agentry's side of the CartPole DQN / Rainbow speed comparison (benches/peers/dqn_cleanrl.py is
the peer, run on the same preset): runs `agent train --algo {dqn|rainbow} --env cartpole` for each
seed and reports, in the peer's JSON fields, the wall-clock to N env steps, episodes, gradient
steps, target syncs, and the mean return of the last 100 episodes at the end and at its best.

    cargo build --release --bin agent
    python3 benches/dqn_agentry.py --algo rainbow --seeds 1,2,3 [--steps 50000] [--out FILE]

Standard library only. `seconds` is the run's own `wall_time_s` (summary.json: the runner's clock,
from starting the actor and resetting its environment to the last update), the figure the peer's
clock matches; `process_seconds` is the whole process, measured here, start-up and checkpoint
writing included. The preset is the one built into the binary (configs/{algo}-cartpole.toml at
build time).
"""
import argparse
import csv
import json
import os
import platform
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def machine():
    model = None
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f
                          if line.startswith("model name")), None)
    except OSError:
        pass
    return {"cpu": model or platform.processor(), "cpus": os.cpu_count(),
            "platform": platform.platform()}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--algo", choices=["dqn", "rainbow"], default="dqn")
    p.add_argument("--seeds", default="1,2,3")
    p.add_argument("--steps", type=int, default=50_000)
    p.add_argument("--agent", default=os.path.join(ROOT, "target", "release", "agent"))
    p.add_argument("--out", default=None, help="write the results as JSON here")
    p.add_argument("--set", action="append", default=[], help="extra --set K=V for agent train")
    args = p.parse_args()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in [int(s) for s in args.seeds.split(",") if s]:
            run = os.path.join(tmp, f"seed{seed}")
            cmd = [args.agent, "train", "--algo", args.algo, "--env", "cartpole",
                   "--seed", str(seed), "--steps", str(args.steps), "--out", run, "-q"]
            for s in args.set:
                cmd += ["--set", s]
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            process_seconds = time.perf_counter() - t0
            with open(os.path.join(run, "summary.json")) as f:
                summary = json.load(f)
            last = None
            with open(os.path.join(run, "metrics.csv")) as f:
                for last in csv.DictReader(f):
                    pass
            seconds = summary["wall_time_s"]
            r = {
                "seed": seed,
                "steps": summary["env_steps"],
                "seconds": seconds,
                "steps_per_s": summary["env_steps"] / seconds,
                "process_seconds": process_seconds,
                "episodes": summary["episodes"],
                "final_mean_return_last100": summary["last_episode_return_mean"],
                "best_mean_return_last100": summary["best_episode_return_mean"],
                "final_window_len": min(summary["episodes"], 100),
                "gradient_steps": int(float(last["charts/gradient_steps"])) if last else 0,
                "target_syncs": int(float(last["charts/target_syncs"])) if last else 0,
            }
            print(f"agentry {args.algo} seed {seed}: {r['steps']} steps in {seconds:.2f} s "
                  f"({r['steps_per_s']:.0f} steps/s; process {process_seconds:.2f} s), "
                  f"{r['gradient_steps']} gradient steps; {r['episodes']} episodes, last-100 mean "
                  f"{r['final_mean_return_last100']}, best {r['best_mean_return_last100']}",
                  flush=True)
            runs.append(r)
    doc = {
        "peer": "agentry", "algo": args.algo, "env": "cartpole",
        "preset": f"configs/{args.algo}-cartpole.toml (built into the binary)",
        "requested_steps": args.steps, "sets": args.set,
        "machine": machine(),
        "runs": runs,
    }
    if args.out:
        with open(args.out, "w") as f:
            json.dump(doc, f, indent=2)
            f.write("\n")


if __name__ == "__main__":
    main()
