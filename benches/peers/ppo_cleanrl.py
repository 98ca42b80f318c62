"""A compact single-file PyTorch PPO in CleanRL's style on CartPole-v1 (agentry's PPO peer).

    /tmp/ppovenv/bin/python benches/peers/ppo_cleanrl.py --seeds 1,2,3 --steps 100000 --out results-cleanrl.json

Same settings as ppo_sb3.py (rl-zoo3's CartPole-v1 preset): 8 CartPole-v1 copies in gymnasium's
SyncVectorEnv, 32 steps per copy per rollout (256 transitions), one minibatch of 256, 20 epochs,
Adam (eps 1e-5) with learning rate 1e-3 and clip coefficient 0.2 both annealed linearly to 0,
gamma 0.98, GAE lambda 0.8, entropy 0, vf_coef 0.5, max_grad_norm 0.5, advantages normalised,
no value clipping. Separate actor and critic MLPs (4-64-64 tanh), orthogonal init (gain sqrt(2),
actor head 0.01, critic head 1).

Truncation: the vector env autoresets in the same step (AutoresetMode.SAME_STEP), so every step is a
real transition and `infos["final_obs"]` holds the last observation of an episode that just ended.
For a truncated (time-limit) episode the reward is increased by gamma * V(final_obs) and the step is
then treated as a boundary, so delta = r + gamma * V(final_obs) - V(s) and GAE stops there; for a
terminated episode nothing is bootstrapped.

Note the CleanRL convention for the value loss, 0.5 * mean((V - R)^2) times vf_coef (SB3 uses
mean((V - R)^2) times vf_coef). Rollouts: ceil(steps / 256), so 100,000 requested steps are 391
rollouts = 100,096 steps, like SB3; the annealing fraction of rollout i (1-based) is 1 - (i - 1) / 391.

Per seed: wall-clock seconds from the first reset to the end of the last update, and the first
environment step (summed over the 8 copies) at which the mean return of the last 100 finished
episodes (full window) is >= 475, with the wall-clock seconds at that point (null if never).
"""

import argparse
import collections
import json
import math
import platform
import random
import time

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
from torch.distributions import Categorical

ENV_ID = "CartPole-v1"
TARGET = 475.0
WINDOW = 100

HP = dict(num_envs=8, num_steps=32, minibatch_size=256, update_epochs=20, learning_rate=1e-3,
          anneal_lr=True, clip_coef=0.2, anneal_clip=True, gamma=0.98, gae_lambda=0.8, ent_coef=0.0,
          vf_coef=0.5, max_grad_norm=0.5, norm_adv=True, clip_vloss=False, adam_eps=1e-5)


def layer(inp, out, gain=math.sqrt(2.0)):
    lin = nn.Linear(inp, out)
    nn.init.orthogonal_(lin.weight, gain)
    nn.init.constant_(lin.bias, 0.0)
    return lin


class Agent(nn.Module):
    def __init__(self, obs_dim, n_actions):
        super().__init__()
        self.critic = nn.Sequential(layer(obs_dim, 64), nn.Tanh(), layer(64, 64), nn.Tanh(),
                                    layer(64, 1, gain=1.0))
        self.actor = nn.Sequential(layer(obs_dim, 64), nn.Tanh(), layer(64, 64), nn.Tanh(),
                                   layer(64, n_actions, gain=0.01))

    def value(self, x):
        return self.critic(x).squeeze(-1)

    def act(self, x, action=None):
        dist = Categorical(logits=self.actor(x))
        if action is None:
            action = dist.sample()
        return action, dist.log_prob(action), dist.entropy(), self.value(x)


def run(seed, steps, threads):
    torch.set_num_threads(threads)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    n_envs, n_steps = HP["num_envs"], HP["num_steps"]
    batch = n_envs * n_steps
    iterations = max(1, math.ceil(steps / batch))
    gamma, lam = HP["gamma"], HP["gae_lambda"]

    envs = gym.vector.SyncVectorEnv([lambda: gym.make(ENV_ID) for _ in range(n_envs)],
                                    autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    obs_dim = envs.single_observation_space.shape[0]
    agent = Agent(obs_dim, envs.single_action_space.n)
    optimizer = torch.optim.Adam(agent.parameters(), lr=HP["learning_rate"], eps=HP["adam_eps"])

    obs_buf = torch.zeros((n_steps, n_envs, obs_dim))
    act_buf = torch.zeros((n_steps, n_envs), dtype=torch.long)
    logp_buf = torch.zeros((n_steps, n_envs))
    rew_buf = torch.zeros((n_steps, n_envs))
    done_buf = torch.zeros((n_steps, n_envs))  # 1 where the episode ended at this step
    val_buf = torch.zeros((n_steps, n_envs))

    window = collections.deque(maxlen=WINDOW)
    ep_ret = np.zeros(n_envs)
    episodes = 0
    solved_step = solved_seconds = None
    global_step = 0

    t0 = time.perf_counter()
    next_obs, _ = envs.reset(seed=[seed + i for i in range(n_envs)])
    envs.single_action_space.seed(seed)
    next_obs = torch.as_tensor(next_obs, dtype=torch.float32)
    for it in range(1, iterations + 1):
        frac = 1.0 - (it - 1.0) / iterations
        if HP["anneal_lr"]:
            optimizer.param_groups[0]["lr"] = frac * HP["learning_rate"]
        clip = frac * HP["clip_coef"] if HP["anneal_clip"] else HP["clip_coef"]

        for t in range(n_steps):
            global_step += n_envs
            obs_buf[t] = next_obs
            with torch.inference_mode():
                action, logp, _, value = agent.act(next_obs)
            act_buf[t], logp_buf[t], val_buf[t] = action, logp, value
            obs, reward, term, trunc, infos = envs.step(action.numpy())
            reward = reward.astype(np.float32)
            done = np.logical_or(term, trunc)
            ep_ret += reward
            if done.any():
                if "final_obs" in infos:
                    tr = np.nonzero(trunc & ~term & infos["_final_obs"])[0]
                    if len(tr):  # time limit: bootstrap from the value of the real last observation
                        final = torch.as_tensor(np.stack(infos["final_obs"][tr]), dtype=torch.float32)
                        with torch.inference_mode():
                            reward[tr] += gamma * agent.value(final).numpy()
                for i in np.nonzero(done)[0]:
                    episodes += 1
                    window.append(float(ep_ret[i]))
                    ep_ret[i] = 0.0
                    if (solved_step is None and len(window) == WINDOW
                            and np.mean(window) >= TARGET):
                        solved_step = global_step
                        solved_seconds = time.perf_counter() - t0
            rew_buf[t] = torch.as_tensor(reward)
            done_buf[t] = torch.as_tensor(done, dtype=torch.float32)
            next_obs = torch.as_tensor(obs, dtype=torch.float32)

        with torch.no_grad():
            next_value = agent.value(next_obs)
            adv = torch.zeros_like(rew_buf)
            last = torch.zeros(n_envs)
            for t in reversed(range(n_steps)):
                nonterminal = 1.0 - done_buf[t]
                nv = next_value if t == n_steps - 1 else val_buf[t + 1]
                delta = rew_buf[t] + gamma * nv * nonterminal - val_buf[t]
                last = delta + gamma * lam * nonterminal * last
                adv[t] = last
            ret = adv + val_buf

        b_obs = obs_buf.reshape(-1, obs_dim)
        b_act, b_logp = act_buf.reshape(-1), logp_buf.reshape(-1)
        b_adv, b_ret = adv.reshape(-1), ret.reshape(-1)
        mb = HP["minibatch_size"]
        for _ in range(HP["update_epochs"]):
            perm = torch.randperm(batch)
            for start in range(0, batch, mb):
                idx = perm[start:start + mb]
                _, newlogp, entropy, newv = agent.act(b_obs[idx], b_act[idx])
                ratio = (newlogp - b_logp[idx]).exp()
                a = b_adv[idx]
                if HP["norm_adv"] and len(idx) > 1:
                    a = (a - a.mean()) / (a.std() + 1e-8)
                pg_loss = torch.max(-a * ratio, -a * ratio.clamp(1 - clip, 1 + clip)).mean()
                v_loss = 0.5 * ((newv - b_ret[idx]) ** 2).mean()
                loss = pg_loss - HP["ent_coef"] * entropy.mean() + HP["vf_coef"] * v_loss
                optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(agent.parameters(), HP["max_grad_norm"])
                optimizer.step()

    seconds = time.perf_counter() - t0
    envs.close()
    return {
        "seed": seed,
        "steps": global_step,
        "seconds": seconds,
        "steps_per_s": global_step / seconds,
        "solved_step": solved_step,
        "solved_seconds": solved_seconds,
        "episodes": episodes,
        "final_mean_return_last100": float(np.mean(window)) if window else None,
        "final_window_len": len(window),
    }


def fmt(r):
    solved = ("never" if r["solved_step"] is None
              else f"step {r['solved_step']} ({r['solved_seconds']:.2f} s)")
    return (f"cleanrl seed {r['seed']}: {r['steps']} steps in {r['seconds']:.2f} s "
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
        "peer": "CleanRL-style PyTorch PPO", "env": ENV_ID, "requested_steps": a.steps,
        "versions": {"torch": torch.__version__, "gymnasium": gym.__version__,
                     "numpy": np.__version__, "python": platform.python_version()},
        "threads": a.threads, "device": "cpu",
        "hyperparameters": HP,
        "target": {"mean_return": TARGET, "window": WINDOW},
        "runs": runs,
    }
    if a.out:
        with open(a.out, "w") as f:
            json.dump(doc, f, indent=2)
            f.write("\n")


if __name__ == "__main__":
    main()
