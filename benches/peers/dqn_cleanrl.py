"""A compact single-file PyTorch DQN and Rainbow in CleanRL's style on CartPole-v1 (the speed peer of
agentry's `agent train --algo dqn|rainbow --env cartpole`).

    /tmp/ppovenv/bin/python benches/peers/dqn_cleanrl.py --algo rainbow --seeds 1,2,3 --steps 50000 --out rainbow.json

Settings: agentry's own preset (`--preset`, default configs/{algo}-cartpole.toml), read with tomllib,
so both sides always run the same numbers. Keys the preset leaves out take agentry's defaults (SB3's
for [dqn], every component on for [rainbow]); `--algo dqn` runs with every Rainbow component off, as
agentry does. One gymnasium CartPole-v1 (time limit 500), CPU, `torch.set_num_threads(--threads)`.

What is meant to match agentry (agents/src/dqn.rs, runner.rs, memory/src/*):

- Steps come in chunks of `train_freq` (the last one shorter so the run stops at exactly `--steps`);
  after each chunk comes one update. ε is fixed for a chunk at its value at the chunk's start:
  1.0 before `learning_starts` (uniformly random actions), then initial + min(1, t / (fraction ·
  steps)) · (final − initial). A greedy action with noisy nets uses freshly sampled noise each step.
- The update: debt += replay_ratio · (steps of the chunk past `learning_starts`); take floor(debt)
  gradient steps and keep the fraction (none while replay holds fewer than batch_size items, the
  debt still spent). Before them, if there are any and env_steps − last_sync ≥
  target_update_interval, the online network is copied into the target network.
- Network: trunk = Linear + activation for hidden[:-1]; each stream = Linear(trunk_out, hidden[-1]),
  activation, Linear(hidden[-1], out). One stream of actions × atoms outputs, or (dueling) a value
  stream of atoms and an advantage stream of actions × atoms, V + A − mean_a A per atom. Noisy:
  the stream layers are factorised-Gaussian (μ ~ U(±1/√fan_in), σ = σ0/√fan_in, f(ε) = sgn(ε)√|ε|);
  plain layers keep nn.Linear's default init.
- Replay: n-step transitions (reward Σ γ^i r_i, discount γ^k, or 0 when the episode terminated in
  the window; a truncated window keeps γ^k and bootstraps from the final observation; an episode end
  flushes every open window). Uniform with replacement, or proportional with a sum tree: p = (x +
  eps)^α with x the sample's loss (C51: its cross-entropy; scalar Q: its Huber loss, which is what
  agentry stores), new items at the largest priority given so far (1 at first), stratified draws,
  weights (p_i / p_min)^−β (= (N·P)^−β over the largest such weight in the memory), β from beta0 to
  1 linearly in env steps over the run.
- Gradient step: sample a batch, fresh noise for the online and the target net (separate draws);
  a* = argmax of the expected Q on next_obs, by the online net (with the same noise as its loss
  forward) if double, else by the target net; scalar: y = r + d · Q_target(s', a*), loss =
  mean(w · smooth_l1(Q(s, a), y)); C51: the target distribution of a* projected onto the support
  (Bellemare et al. 2017, Algorithm 1), loss = mean(w · cross-entropy). Adam(lr, eps=adam_eps), global
  gradient-norm clip max_grad_norm, then the batch's priorities are refreshed.

Per seed: wall-clock seconds from the first reset to the end of the last update, steps, episodes,
gradient steps, target syncs, the mean return of the last ≤100 episodes at the end and the best such
mean over the run, taken (like agentry's `best_episode_return_mean`) after every update.
"""

import argparse
import collections
import json
import math
import os
import platform
import random
import time
import tomllib

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

ENV_ID = "CartPole-v1"
WINDOW = 100
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# agentry's defaults (agents/src/config.rs) for keys a preset leaves out.
DQN_DEFAULTS = dict(learning_rate=1e-4, anneal_lr=False, adam_eps=1e-8, batch_size=32, buffer_size=1_000_000,
                    learning_starts=100, gamma=0.99, train_freq=4, replay_ratio=0.25,
                    target_update_interval=10_000, exploration_fraction=0.1,
                    exploration_initial_eps=1.0, exploration_final_eps=0.05, max_grad_norm=10.0,
                    hidden=[64, 64], activation="relu")
RAINBOW_DEFAULTS = dict(double=True, dueling=True, noisy=True, noisy_sigma0=0.5, distributional=True,
                        atoms=51, v_min=-10.0, v_max=10.0, n_step=3, prioritized=True,
                        priority_alpha=0.5, priority_beta0=0.4, priority_eps=1e-6)
RAINBOW_OFF = dict(RAINBOW_DEFAULTS, double=False, dueling=False, noisy=False, distributional=False,
                   n_step=1, prioritized=False)


def load_preset(path, algo):
    """The [dqn] and [rainbow] settings of an agentry preset, as one flat dict."""
    with open(path, "rb") as f:
        doc = tomllib.load(f)
    run = doc.get("run", {})
    if run.get("algo", algo) != algo:
        raise SystemExit(f"{path} is a preset for {run['algo']}, not {algo}")
    if run.get("actors", 1) != 1 or run.get("envs_per_actor", 1) != 1:
        raise SystemExit(f"{path}: this peer runs one actor with one environment")
    if doc.get("env", {}).get("name", "cartpole") != "cartpole":
        raise SystemExit(f"{path}: this peer runs CartPole only")
    if doc.get("plasticity", {}).get("layer_norm", False):
        raise SystemExit(f"{path}: layer_norm is not implemented here")

    def section(name, defaults):
        given = doc.get(name, {})
        unknown = set(given) - set(defaults)
        if unknown:
            raise SystemExit(f"{path}: unknown keys in [{name}]: {sorted(unknown)}")
        return {**defaults, **given}

    hp = section("dqn", DQN_DEFAULTS)
    if algo == "rainbow":
        hp.update(section("rainbow", RAINBOW_DEFAULTS))
    elif "rainbow" in doc:
        raise SystemExit(f"{path}: [rainbow] is only read by --algo rainbow")
    else:
        hp.update(RAINBOW_OFF)
    if hp["activation"] not in ("relu", "tanh"):
        raise SystemExit(f"{path}: activation {hp['activation']!r}")
    return hp


class NoisyLinear(nn.Module):
    """Factorised-Gaussian noisy layer (Fortunato et al. 2018):
    y = (μ_w + σ_w ⊙ f(ε_out) f(ε_in)ᵀ) x + μ_b + σ_b ⊙ f(ε_out)."""

    def __init__(self, fan_in, fan_out, sigma0):
        super().__init__()
        bound = 1.0 / math.sqrt(fan_in)
        self.fan_in, self.fan_out = fan_in, fan_out
        self.weight_mu = nn.Parameter(torch.empty(fan_out, fan_in).uniform_(-bound, bound))
        self.bias_mu = nn.Parameter(torch.empty(fan_out).uniform_(-bound, bound))
        self.weight_sigma = nn.Parameter(torch.full((fan_out, fan_in), sigma0 * bound))
        self.bias_sigma = nn.Parameter(torch.full((fan_out,), sigma0 * bound))
        # f(ε_in), f(ε_out): views into QNetwork.noise, drawn by QNetwork.sample_noise. Not module
        # state, so a target sync copies the parameters only.
        self.eps_in, self.eps_out = torch.zeros(fan_in), torch.zeros(fan_out)

    def forward(self, x):
        # The rank-one noise matrix is never formed: (σ_w ⊙ ε_out ε_inᵀ) x = ε_out ⊙ σ_w (ε_in ⊙ x).
        mean = F.linear(x, self.weight_mu, self.bias_mu)
        return mean + F.linear(x * self.eps_in, self.weight_sigma, self.bias_sigma) * self.eps_out


class QNetwork(nn.Module):
    """Trunk (hidden[:-1]) then one stream, or value and advantage streams (dueling), each
    Linear(trunk_out, hidden[-1]) → activation → Linear(hidden[-1], outputs)."""

    def __init__(self, obs_dim, n_actions, hp):
        super().__init__()
        self.n_actions = n_actions
        self.atoms = hp["atoms"] if hp["distributional"] else 1
        act = nn.ReLU if hp["activation"] == "relu" else nn.Tanh
        widths = [obs_dim] + list(hp["hidden"][:-1])
        layers = []
        for i, o in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(i, o), act()]
        self.trunk = nn.Sequential(*layers)
        h = hp["hidden"][-1]
        if hp["noisy"]:
            def dense(i, o):
                return NoisyLinear(i, o, hp["noisy_sigma0"])
        else:
            dense = nn.Linear

        def stream(outputs):
            return nn.Sequential(dense(widths[-1], h), act(), dense(h, outputs))

        self.value = stream(self.atoms) if hp["dueling"] else None
        self.advantage = stream(n_actions * self.atoms)
        # One buffer holds every noisy layer's f(ε_in), f(ε_out); the layers keep views of it.
        noisy = [m for m in self.modules() if isinstance(m, NoisyLinear)]
        self.noise = torch.zeros(sum(m.fan_in + m.fan_out for m in noisy))
        k = 0
        for m in noisy:
            m.eps_in = self.noise[k:k + m.fan_in]
            m.eps_out = self.noise[k + m.fan_in:k + m.fan_in + m.fan_out]
            k += m.fan_in + m.fan_out

    def sample_noise(self):
        """Fresh f(ε) = sgn(ε)√|ε|, ε ~ N(0, 1), for every noisy layer, in place."""
        if len(self.noise):
            e = self.noise.normal_()
            e.copy_(e.sign() * e.abs().sqrt())

    def forward(self, x):
        """[batch, obs_dim] → [batch, actions, atoms]: Q-values (atoms = 1) or per-atom logits."""
        h = self.trunk(x)
        adv = self.advantage(h).view(-1, self.n_actions, self.atoms)
        if self.value is None:
            return adv
        value = self.value(h).view(-1, 1, self.atoms)
        return value + adv - adv.mean(1, keepdim=True)


def expected_q(out, support):
    """[batch, actions, atoms] → [batch, actions]: Σ_j softmax_j · z_j, or the scalar outputs."""
    if support is None:
        return out.squeeze(-1)
    return (out.softmax(-1) * support).sum(-1)


def project(probs, rewards, discounts, v_min, v_max):
    """C51's projection (Bellemare et al. 2017, Algorithm 1) of the distribution of r + d·Z, Z with
    `probs` ([batch, atoms]) on the support, back onto the support: each shifted atom's mass is split
    between its two neighbours by closeness (values beyond the ends clamped onto them)."""
    batch, atoms = probs.shape
    dz = (v_max - v_min) / (atoms - 1)
    z = v_min + torch.arange(atoms, dtype=torch.float32) * dz
    tz = (rewards[:, None] + discounts[:, None] * z).clamp(v_min, v_max)
    b = ((tz - v_min) / dz).clamp(0, atoms - 1)
    lo, hi = b.floor(), b.ceil()
    # An atom landing exactly on a support point (lo == hi) keeps all its mass there.
    to_lo = probs * (hi - b + (lo == hi).float())
    to_hi = probs * (b - lo)
    offset = (torch.arange(batch) * atoms)[:, None]
    out = torch.zeros(batch * atoms)
    out.index_add_(0, (lo.long() + offset).view(-1), to_lo.view(-1))
    out.index_add_(0, (hi.long() + offset).view(-1), to_hi.view(-1))
    return out.view(batch, atoms)


class Replay:
    """A ring of (n-step) transitions, sampled uniformly with replacement or in proportion to
    priority through a sum tree: node 1 is the root, node j has children 2j and 2j + 1, leaf i is
    node L + i (L the capacity rounded up to a power of two). Inner nodes are recomputed from their
    children on every change, so they never drift."""

    def __init__(self, capacity, obs_dim, hp, rng):
        self.capacity, self.rng, self.inserted = capacity, rng, 0
        self.obs = np.zeros((capacity, obs_dim), dtype=np.float32)
        self.next_obs = np.zeros((capacity, obs_dim), dtype=np.float32)
        self.actions = np.zeros(capacity, dtype=np.int64)
        self.rewards = np.zeros(capacity, dtype=np.float32)
        self.discounts = np.zeros(capacity, dtype=np.float32)
        self.prioritized = hp["prioritized"]
        if self.prioritized:
            self.alpha, self.eps = hp["priority_alpha"], hp["priority_eps"]
            self.depth = (capacity - 1).bit_length()
            self.leaves = 1 << self.depth
            self.sums = np.zeros(2 * self.leaves)
            self.max_priority = 1.0

    def __len__(self):
        return min(self.inserted, self.capacity)

    def add(self, obs, action, reward, next_obs, discount):
        i = self.inserted % self.capacity
        self.obs[i], self.actions[i], self.rewards[i] = obs, action, reward
        self.next_obs[i], self.discounts[i] = next_obs, discount
        self.inserted += 1
        if self.prioritized:
            s, node = self.sums, self.leaves + i
            s[node] = self.max_priority
            node >>= 1
            while node:
                s[node] = s[2 * node] + s[2 * node + 1]
                node >>= 1

    def sample(self, batch, beta):
        """(slots, obs, actions, rewards, next_obs, discounts, weights) as tensors but slots."""
        n = len(self)
        if not self.prioritized:
            idx = self.rng.integers(0, n, size=batch)
            weights = np.ones(batch, dtype=np.float32)
        else:
            s = self.sums
            # Stratified: one draw in each of `batch` equal segments of [0, total).
            u = (np.arange(batch) + self.rng.random(batch)) * (s[1] / batch)
            node = np.ones(batch, dtype=np.int64)
            for _ in range(self.depth):
                left = 2 * node
                below = s[left]
                # Never descend into an empty subtree, whatever rounding did to u.
                right = (u >= below) & (s[left + 1] > 0)
                u -= below * right
                node = left + right
            idx = node - self.leaves
            p_min = s[self.leaves:self.leaves + n].min()
            weights = ((s[node] / p_min) ** -beta).astype(np.float32)
        t = torch.from_numpy
        return (idx, t(self.obs[idx]), t(self.actions[idx]), t(self.rewards[idx]),
                t(self.next_obs[idx]), t(self.discounts[idx]), t(weights))

    def update_priorities(self, idx, losses):
        """p = (|loss| + eps)^α for the sampled slots (a slot drawn twice: the later loss wins)."""
        if not self.prioritized:
            return
        p = np.clip((np.abs(losses.astype(np.float64)) + self.eps) ** self.alpha, 1e-150, 1e150)
        self.max_priority = max(self.max_priority, float(p.max()))
        s, node = self.sums, self.leaves + idx
        s[node] = p
        for _ in range(self.depth):
            node = node >> 1
            s[node] = s[2 * node] + s[2 * node + 1]


class NStep:
    """Folds the steps of one environment into n-step transitions for `sink`: every step opens a
    window, a window is emitted when it holds n steps or when the episode ends inside it."""

    def __init__(self, n, gamma, sink):
        self.n, self.gamma, self.sink = n, gamma, sink
        self.pending = collections.deque()  # (obs, action, reward), oldest first

    def add(self, obs, action, reward, terminated, truncated, next_obs):
        self.pending.append((obs, action, reward))
        if terminated or truncated:
            while self.pending:
                self._emit_oldest(next_obs, terminated)
        elif len(self.pending) == self.n:
            self._emit_oldest(next_obs, False)

    def _emit_oldest(self, next_obs, terminated):
        ret, power = 0.0, 1.0
        for _, _, r in self.pending:
            ret += power * r
            power *= self.gamma
        obs, action, _ = self.pending.popleft()
        self.sink.add(obs, action, ret, next_obs, 0.0 if terminated else power)


def run(seed, steps, threads, hp):
    torch.set_num_threads(threads)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    env = gym.make(ENV_ID)
    obs_dim, n_actions = env.observation_space.shape[0], env.action_space.n

    q_net = QNetwork(obs_dim, n_actions, hp)
    target = QNetwork(obs_dim, n_actions, hp)
    target.load_state_dict(q_net.state_dict())
    optimizer = torch.optim.Adam(q_net.parameters(), lr=hp["learning_rate"], eps=hp["adam_eps"])
    support = None
    if hp["distributional"]:
        dz = (hp["v_max"] - hp["v_min"]) / (hp["atoms"] - 1)
        support = hp["v_min"] + torch.arange(hp["atoms"], dtype=torch.float32) * dz
    replay = Replay(hp["buffer_size"], obs_dim, hp, np.random.default_rng(seed))
    adder = NStep(hp["n_step"], hp["gamma"], replay)
    batch_size, starts = hp["batch_size"], hp["learning_starts"]
    rows = torch.arange(batch_size)

    def epsilon(t):
        if t < starts:
            return 1.0
        span = hp["exploration_fraction"] * steps
        frac = min(1.0, t / span) if span > 0 else 1.0
        return hp["exploration_initial_eps"] + frac * (hp["exploration_final_eps"]
                                                     - hp["exploration_initial_eps"])

    window = collections.deque(maxlen=WINDOW)
    ep_ret, episodes, best = 0.0, 0, None
    grad_debt, grad_steps, last_sync, syncs, last_update = 0.0, 0, 0, 0, 0

    t0 = time.perf_counter()
    obs, _ = env.reset(seed=seed)
    eps = epsilon(0)
    for global_step in range(1, steps + 1):
        if eps > 0 and random.random() < eps:
            action = random.randrange(n_actions)
        else:
            with torch.no_grad():
                q_net.sample_noise()
                action = int(expected_q(q_net(torch.from_numpy(obs)[None]), support).argmax())
        next_obs, reward, terminated, truncated, _ = env.step(action)
        adder.add(obs, action, float(reward), terminated, truncated, next_obs)
        ep_ret += float(reward)
        if terminated or truncated:
            episodes += 1
            window.append(ep_ret)
            ep_ret = 0.0
            obs, _ = env.reset()
        else:
            obs = next_obs

        if global_step % hp["train_freq"] != 0 and global_step != steps:
            continue
        # The update, once per chunk of train_freq steps.
        grad_debt += hp["replay_ratio"] * max(0, global_step - max(last_update, starts))
        last_update = global_step
        n_grad = math.floor(grad_debt)
        grad_debt -= n_grad
        if len(replay) < batch_size:
            n_grad = 0
        if n_grad > 0 and global_step - last_sync >= hp["target_update_interval"]:
            target.load_state_dict(q_net.state_dict())
            last_sync, syncs = global_step, syncs + 1
        beta = hp["priority_beta0"] + min(1.0, global_step / steps) * (1.0 - hp["priority_beta0"])
        if hp["anneal_lr"]:
            # Linear to 0 over the run, set once per update from the steps taken so far.
            for group in optimizer.param_groups:
                group["lr"] = hp["learning_rate"] * max(0.0, 1.0 - global_step / steps)
        for _ in range(n_grad):
            idx, b_obs, b_act, b_rew, b_next, b_disc, b_w = replay.sample(batch_size, beta)
            q_net.sample_noise()
            target.sample_noise()
            with torch.no_grad():
                next_out = target(b_next)
                chooser = q_net(b_next) if hp["double"] else next_out
                a_star = expected_q(chooser, support).argmax(1)
                next_row = next_out[rows, a_star]  # [batch, atoms]
                if support is None:
                    y = b_rew + b_disc * next_row.squeeze(-1)
                else:
                    y = project(next_row.softmax(-1), b_rew, b_disc, hp["v_min"], hp["v_max"])
            chosen = q_net(b_obs)[rows, b_act]  # [batch, atoms]
            if support is None:
                per_sample = F.smooth_l1_loss(chosen.squeeze(-1), y, reduction="none")
            else:
                per_sample = -(y * F.log_softmax(chosen, -1)).sum(-1)
            loss = (b_w * per_sample).mean()
            optimizer.zero_grad()
            loss.backward()
            if hp["max_grad_norm"] > 0:
                nn.utils.clip_grad_norm_(q_net.parameters(), hp["max_grad_norm"])
            optimizer.step()
            replay.update_priorities(idx, per_sample.detach().numpy())
            grad_steps += 1
        if window:
            mean = float(np.mean(window))
            best = mean if best is None else max(best, mean)
        eps = epsilon(global_step)

    seconds = time.perf_counter() - t0
    env.close()
    return {
        "seed": seed,
        "steps": steps,
        "seconds": seconds,
        "steps_per_s": steps / seconds,
        "episodes": episodes,
        "final_mean_return_last100": float(np.mean(window)) if window else None,
        "best_mean_return_last100": best,
        "final_window_len": len(window),
        "gradient_steps": grad_steps,
        "target_syncs": syncs,
    }


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


def fmt(algo, r):
    return (f"{algo} seed {r['seed']}: {r['steps']} steps in {r['seconds']:.2f} s "
            f"({r['steps_per_s']:.0f} steps/s), {r['gradient_steps']} gradient steps; "
            f"{r['episodes']} episodes, last-100 mean {r['final_mean_return_last100']}, "
            f"best {r['best_mean_return_last100']}")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--algo", choices=["dqn", "rainbow"], default="dqn")
    p.add_argument("--preset", default=None,
                   help="agentry preset TOML (default: configs/{algo}-cartpole.toml)")
    p.add_argument("--seeds", default="1,2,3", help="comma-separated seeds")
    p.add_argument("--steps", type=int, default=50_000)
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    p.add_argument("--out", default=None, help="JSON file to write")
    a = p.parse_args()
    preset = a.preset or os.path.join(ROOT, "configs", f"{a.algo}-cartpole.toml")
    hp = load_preset(preset, a.algo)
    seeds = [int(s) for s in a.seeds.split(",") if s]
    runs = []
    for seed in seeds:
        r = run(seed, a.steps, a.threads, hp)
        print(fmt(a.algo, r), flush=True)
        runs.append(r)
    doc = {
        "peer": f"CleanRL-style PyTorch {'DQN' if a.algo == 'dqn' else 'Rainbow'}",
        "algo": a.algo, "env": ENV_ID, "preset": os.path.relpath(preset, ROOT),
        "requested_steps": a.steps,
        "versions": {"torch": torch.__version__, "gymnasium": gym.__version__,
                     "numpy": np.__version__, "python": platform.python_version()},
        "machine": machine(), "threads": a.threads, "device": "cpu",
        "hyperparameters": hp,
        "runs": runs,
    }
    if a.out:
        with open(a.out, "w") as f:
            json.dump(doc, f, indent=2)
            f.write("\n")


if __name__ == "__main__":
    main()
