"""PyTorch peer of `agent bench inference --net cnn`: the Nature CNN (Mnih et al. 2015)
on one 4x84x84 uint8 frame stack per call, scaled by 1/255 inside the timed call,
torch.no_grad(), one thread by default. Prints microseconds per call."""
import argparse
import time

import torch
import torch.nn as nn


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--actions", type=int, default=6)
    p.add_argument("--calls", type=int, default=500)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    net = nn.Sequential(
        nn.Conv2d(4, 32, 8, stride=4), nn.ReLU(),
        nn.Conv2d(32, 64, 4, stride=2), nn.ReLU(),
        nn.Conv2d(64, 64, 3, stride=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(3136, 512), nn.ReLU(), nn.Linear(512, a.actions),
    ).eval()
    x = torch.randint(0, 256, (1, 4, 84, 84), dtype=torch.uint8)
    with torch.no_grad():
        for _ in range(50):
            net(x.float() / 255.0)
        t = time.perf_counter()
        for _ in range(a.calls):
            net(x.float() / 255.0)
        dt = time.perf_counter() - t
    print(f"PyTorch {torch.__version__} Nature CNN, {a.threads} thread(s): "
          f"{dt / a.calls * 1e6:.0f} us/call")


if __name__ == "__main__":
    main()
