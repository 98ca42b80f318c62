"""ale-py's own loop, the peer of atari_speed.rs: Breakout, random minimal-set actions,
one frame per call, sticky actions 0.25, the RGB screen read after every frame.

    python3 envs/examples/atari_speed.py [FRAMES]
"""

import os
import sys
import time

import ale_py
import numpy as np

frames = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
ale = ale_py.ALEInterface()
ale.setLoggerMode(ale_py.LoggerMode.Error)
ale.setInt("random_seed", 0)
ale.setFloat("repeat_action_probability", 0.25)
ale.loadROM(os.path.join(os.path.dirname(ale_py.__file__), "roms", "breakout.bin"))
actions = ale.getMinimalActionSet()
screen = np.empty((210, 160, 3), dtype=np.uint8)
rng = np.random.default_rng(0)
choices = rng.integers(0, len(actions), size=frames)
ale.reset_game()
start = time.perf_counter()
for i in range(frames):
    ale.act(actions[choices[i]])
    ale.getScreenRGB(screen)
    if ale.game_over():
        ale.reset_game()
secs = time.perf_counter() - start
print(f"ale-py {ale_py.__version__}: {frames / secs:.0f} frames/s (Breakout, {frames} frames)")
