"""Steps per second of Atari Breakout in Gymnasium and EnvPool (agentry's peers, issue 6).

    /tmp/benchvenv/bin/python benches/peers/atari_bench.py --peer gym --steps 20000
    /tmp/benchvenv/bin/python benches/peers/atari_bench.py --peer gym --vector 8 --mode async
    /tmp/benchvenv/bin/python benches/peers/atari_bench.py --peer envpool --num-envs 8 --threads 2
    ... add --raw for the unpreprocessed v5 environment

Two workloads, each with uniformly random actions drawn before the clock starts:

- preprocessed (the default), the settings of agentry's `atari:Breakout`: sticky actions
  0.25, up to 30 no-ops at reset, 4 frames per step with the last two max-pooled,
  episodic life (a lost life ends the episode; the next reset only takes a no-op step
  unless the game is over), FIRE at reset, grayscale 84x84 (INTER_AREA), reward sign,
  4 frames stacked, 108,000 frames per episode at most.
  Gymnasium: `ALE/Breakout-v5` with frameskip=1, then AtariPreprocessing, the two small
  wrappers below (episodic life, fire reset), TransformReward(sign) and
  FrameStackObservation(4). EnvPool: `Breakout-v5` with every one of those settings
  passed explicitly (its defaults differ: no sticky actions, no episodic life, no clip).
- `--raw`: Gymnasium's `ALE/Breakout-v5` as `gymnasium.make` gives it (RGB 210x160x3,
  frameskip 4, sticky 0.25), the peer of agentry's `ALE/Breakout-v5`. EnvPool cannot
  turn its preprocessing off; the closest it allows is a 210x160 RGB frame, no stacking,
  no no-ops, no fire reset, no episodic life, no clip, still with its max-pool over the
  last two frames and its (same-size) resize.

Gymnasium: one environment (`--vector 0`, resetting when an episode ends, as a user's
loop does), or its SyncVectorEnv / AsyncVectorEnv (one process per copy) of N copies.
EnvPool: synchronous mode, batch = all envs, `--threads` worker threads.
Prints `<number> steps/s` (steps summed over copies; one step = 4 frames), then a JSON
line of details.
"""

import argparse
import json
import platform
import time

import gymnasium as gym
import numpy as np

FRAMES_PER_EPISODE = 108_000


class EpisodicLife(gym.Wrapper):
    """A lost life ends the episode for the learner; the game itself goes on.

    reset() only restarts the game when it is really over; otherwise it takes one no-op
    step from where the life was lost (Mnih et al. 2015's training setting)."""

    def __init__(self, env):
        super().__init__(env)
        self.lives = 0
        self.game_over = True

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.game_over = terminated or truncated
        lives = self.env.unwrapped.ale.lives()
        if 0 < lives < self.lives:
            terminated = True
        self.lives = lives
        return obs, reward, terminated, truncated, info

    def reset(self, **kwargs):
        if self.game_over:
            obs, info = self.env.reset(**kwargs)
        else:
            obs, _, terminated, truncated, info = self.env.step(0)
            if terminated or truncated:
                obs, info = self.env.reset(**kwargs)
        self.lives = self.env.unwrapped.ale.lives()
        self.game_over = False
        return obs, info


class FireReset(gym.Wrapper):
    """Press FIRE (then action 2) after every reset: Breakout waits for it to serve."""

    def reset(self, **kwargs):
        self.env.reset(**kwargs)
        obs, _, terminated, truncated, info = self.env.step(1)
        if terminated or truncated:
            self.env.reset(**kwargs)
        obs, _, terminated, truncated, info = self.env.step(2)
        if terminated or truncated:
            obs, info = self.env.reset(**kwargs)
        return obs, info


def make_gym(raw):
    import ale_py

    gym.register_envs(ale_py)
    if raw:
        return gym.make("ALE/Breakout-v5")
    env = gym.make("ALE/Breakout-v5", frameskip=1, repeat_action_probability=0.25,
                   max_num_frames_per_episode=FRAMES_PER_EPISODE)
    env = gym.wrappers.AtariPreprocessing(env, noop_max=30, frame_skip=4, screen_size=84,
                                          terminal_on_life_loss=False, grayscale_obs=True,
                                          scale_obs=False)
    env = EpisodicLife(env)
    env = FireReset(env)
    env = gym.wrappers.TransformReward(env, np.sign)
    return gym.wrappers.FrameStackObservation(env, 4)


def make_envpool(raw, num_envs, threads, seed):
    import envpool

    common = dict(num_envs=num_envs, batch_size=num_envs, num_threads=threads, seed=seed,
                  repeat_action_probability=0.25, frame_skip=4,
                  max_episode_steps=FRAMES_PER_EPISODE // 4, full_action_space=False)
    if raw:
        settings = dict(img_height=210, img_width=160, gray_scale=False, stack_num=1,
                        noop_max=1, episodic_life=False, use_fire_reset=False,
                        reward_clip=False)
    else:
        settings = dict(img_height=84, img_width=84, gray_scale=True, stack_num=4,
                        noop_max=30, episodic_life=True, use_fire_reset=True,
                        reward_clip=True, zero_discount_on_life_loss=False,
                        use_inter_area_resize=True)
    env = envpool.make_gymnasium("Breakout-v5", **common, **settings)
    # EnvPool's own record of what it runs with, to check that every setting was taken.
    config = {k: getattr(env.spec.config, k) for k in {**common, **settings}}
    return env, envpool.__version__, config


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--peer", choices=["gym", "envpool"], required=True)
    p.add_argument("--raw", action="store_true", help="unpreprocessed v5 (see above)")
    p.add_argument("--vector", type=int, default=0, help="gym: copies in a vector env (0: one env)")
    p.add_argument("--mode", choices=["sync", "async"], default="sync", help="gym vector env kind")
    p.add_argument("--num-envs", type=int, default=8, help="envpool: copies")
    p.add_argument("--threads", type=int, default=1, help="envpool: worker threads")
    p.add_argument("--steps", type=int, default=20_000)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    rng = np.random.default_rng(a.seed)
    details = {}
    if a.peer == "envpool":
        env, version, details["config"] = make_envpool(a.raw, a.num_envs, a.threads, a.seed)
        env.reset()
        table = rng.integers(0, env.action_space.n, size=(1024, a.num_envs)).astype(np.int32)
        rounds = max(1, a.steps // a.num_envs)
        start = time.perf_counter()
        for t in range(rounds):
            env.step(table[t % 1024])
        seconds = time.perf_counter() - start
        steps = rounds * a.num_envs
        details.update(num_envs=a.num_envs, threads=a.threads)
    elif a.vector:
        fns = [lambda: make_gym(a.raw) for _ in range(a.vector)]
        env = (gym.vector.SyncVectorEnv(fns) if a.mode == "sync"
               else gym.vector.AsyncVectorEnv(fns))
        env.reset(seed=a.seed)
        table = rng.integers(0, env.single_action_space.n, size=(1024, a.vector))
        rounds = max(1, a.steps // a.vector)
        start = time.perf_counter()
        for t in range(rounds):
            env.step(table[t % 1024])
        seconds = time.perf_counter() - start
        steps = rounds * a.vector
        env.close()
        version = gym.__version__
        details.update(vector=a.vector, mode=a.mode)
    else:
        env = make_gym(a.raw)
        env.reset(seed=a.seed)
        table = rng.integers(0, env.action_space.n, size=1024)
        start = time.perf_counter()
        for t in range(a.steps):
            _, _, terminated, truncated, _ = env.step(table[t % 1024])
            if terminated or truncated:
                env.reset()
        seconds = time.perf_counter() - start
        steps = a.steps
        version = gym.__version__
        details.update(env_class=str(env))
    import ale_py

    print(f"{steps / seconds:.0f} steps/s")
    print(json.dumps({"peer": a.peer, "version": version, "ale_py": ale_py.__version__,
                      "numpy": np.__version__, "python": platform.python_version(),
                      "env": "Breakout-v5", "raw": a.raw, "steps": steps, "seconds": seconds,
                      "steps_per_s": steps / seconds, **details}))


if __name__ == "__main__":
    main()
