"""Single-observation latency of a 4-64-64-2 tanh MLP policy in PyTorch on the CPU (agentry's peer).

    /tmp/ppovenv/bin/python benches/peers/torch_inference.py --out results-torch-inference.json

For 1 thread and for PyTorch's default thread count (torch.get_num_threads() at start-up), each in
torch.inference_mode(), it times every call on its own (time.perf_counter_ns) after a warm-up and
reports the median (also p10, p90, mean) in microseconds per call, for:

- forward:  net(x), x a (1, 4) float32 tensor made before the clock starts;
- sample:   Categorical(logits=logits).sample() on a (1, 2) logits tensor (the action draw alone);
- sample_multinomial: torch.multinomial(torch.softmax(logits, -1), 1), the same draw without
            the Distribution object (Categorical validates its arguments on construction by default);
- act:      the whole step a policy does per observation: torch.from_numpy(obs) of a (1, 4) float32
            NumPy array, forward, Categorical sample, .item() to a Python int.

Prints one line per (threads, measurement) and writes JSON with --out.
"""

import argparse
import json
import platform
import time

import numpy as np
import torch
import torch.nn as nn
from torch.distributions import Categorical


def make_net():
    return nn.Sequential(nn.Linear(4, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 2))


def timed(fn, warmup, calls):
    for _ in range(warmup):
        fn()
    ns = np.empty(calls, dtype=np.int64)
    clock = time.perf_counter_ns
    for i in range(calls):
        t = clock()
        fn()
        ns[i] = clock() - t
    us = ns / 1000.0
    return {"median_us": float(np.median(us)), "p10_us": float(np.percentile(us, 10)),
            "p90_us": float(np.percentile(us, 90)), "mean_us": float(us.mean()), "calls": calls}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--calls", type=int, default=20_000, help="timed calls per measurement")
    p.add_argument("--warmup", type=int, default=2_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="JSON file to write")
    a = p.parse_args()

    default_threads = torch.get_num_threads()
    torch.manual_seed(a.seed)
    net = make_net().eval()
    obs_np = np.random.default_rng(a.seed).standard_normal((1, 4)).astype(np.float32)
    x = torch.from_numpy(obs_np.copy())

    results = []
    for threads in sorted({1, default_threads}):
        torch.set_num_threads(threads)
        with torch.inference_mode():
            logits = net(x)

            def forward():
                net(x)

            def sample():
                Categorical(logits=logits).sample()

            def sample_multinomial():
                torch.multinomial(torch.softmax(logits, -1), 1)

            def act():
                return Categorical(logits=net(torch.from_numpy(obs_np))).sample().item()

            for name, fn in (("forward", forward), ("sample", sample),
                             ("sample_multinomial", sample_multinomial), ("act", act)):
                r = dict(threads=threads, measurement=name, **timed(fn, a.warmup, a.calls))
                print(f"torch threads={threads} {name}: {r['median_us']:.2f} us/call median "
                      f"(p10 {r['p10_us']:.2f}, p90 {r['p90_us']:.2f}, mean {r['mean_us']:.2f})", flush=True)
                results.append(r)

    doc = {"peer": "pytorch", "model": "4-64-64-2 tanh MLP, float32, input (1, 4)",
           "versions": {"torch": torch.__version__, "numpy": np.__version__,
                        "python": platform.python_version()},
           "default_threads": default_threads, "warmup": a.warmup, "results": results}
    if a.out:
        with open(a.out, "w") as f:
            json.dump(doc, f, indent=2)
            f.write("\n")


if __name__ == "__main__":
    main()
