"""PyTorch peer of `agent bench sequence`: the per-step inference latency (one
environment step = TOKENS_PER_STEP tokens fed one by one, 3 by default as the LRAM and DT
agents' state, return-to-go and reward) of an xLSTM stack (NX-AI's `xlstm` package, mLSTM blocks with an sLSTM block at index 1,
sLSTM on its "vanilla" PyTorch backend) and of a GPT-style causal Transformer with a
KV cache holding CONTEXT steps' tokens, at equal width and depth. torch.no_grad(), float32,
one thread by default. Prints one line per (model, context, batch): microseconds per
step (each step timed alone; median, and mean in brackets) and the bytes of state the
step reads (xLSTM state / KV cache).

    pip install torch xlstm
    python benches/peers/torch_seq_step.py --d-model 128 --layers 4 --heads 4
"""
import argparse
import math
import time

import torch
import torch.nn as nn


class CachedGpt(nn.Module):
    """Pre-LN GPT blocks; `step` appends one token to a sliding KV cache."""

    def __init__(self, d, layers, heads):
        super().__init__()
        self.d, self.h = d, heads
        self.blocks = nn.ModuleList()
        for _ in range(layers):
            self.blocks.append(nn.ModuleDict(dict(
                ln1=nn.LayerNorm(d), qkv=nn.Linear(d, 3 * d), proj=nn.Linear(d, d),
                ln2=nn.LayerNorm(d), fc=nn.Linear(d, 4 * d), out=nn.Linear(4 * d, d))))
        self.ln = nn.LayerNorm(d)

    def init_cache(self, batch, context):
        dh = self.d // self.h
        return [[torch.zeros(batch, self.h, context, dh), torch.zeros(batch, self.h, context, dh)]
                for _ in self.blocks]

    def step(self, x, cache, pos):
        """x: [B, d]; the cache is a ring of `context` slots, `pos` the slot to fill."""
        b, d = x.shape
        dh = d // self.h
        for blk, (kc, vc) in zip(self.blocks, cache):
            q, k, v = blk["qkv"](blk["ln1"](x)).split(d, dim=-1)
            q = q.view(b, self.h, 1, dh)
            kc[:, :, pos] = k.view(b, self.h, dh)
            vc[:, :, pos] = v.view(b, self.h, dh)
            att = torch.softmax((q @ kc.transpose(-1, -2)) / math.sqrt(dh), dim=-1)
            y = (att @ vc).reshape(b, d)
            x = x + blk["proj"](y)
            x = x + blk["out"](nn.functional.gelu(blk["fc"](blk["ln2"](x))))
        return self.ln(x)


def xlstm_stack(d, layers, heads, slstm_at):
    from xlstm import (FeedForwardConfig, mLSTMBlockConfig, mLSTMLayerConfig,
                       sLSTMBlockConfig, sLSTMLayerConfig, xLSTMBlockStack,
                       xLSTMBlockStackConfig)
    cfg = xLSTMBlockStackConfig(
        mlstm_block=mLSTMBlockConfig(mlstm=mLSTMLayerConfig(
            conv1d_kernel_size=4, qkv_proj_blocksize=4, num_heads=heads)),
        slstm_block=sLSTMBlockConfig(
            slstm=sLSTMLayerConfig(backend="vanilla", num_heads=heads, conv1d_kernel_size=4,
                                   bias_init="powerlaw_blockdependent", dtype="float32"),
            feedforward=FeedForwardConfig(proj_factor=1.3, act_fn="gelu")),
        context_length=64, num_blocks=layers, embedding_dim=d, slstm_at=slstm_at)
    return xLSTMBlockStack(cfg).eval()


def timed(steps, step):
    """Time `steps` calls of `step(i)` one by one: (median, mean) in microseconds."""
    us = []
    for i in range(steps):
        t = time.perf_counter()
        step(i)
        us.append((time.perf_counter() - t) * 1e6)
    us.sort()
    return us[len(us) // 2], sum(us) / len(us)


def state_bytes(state):
    if isinstance(state, torch.Tensor):
        return state.numel() * state.element_size()
    if isinstance(state, dict):
        return sum(state_bytes(v) for v in state.values())
    if isinstance(state, (list, tuple)):
        return sum(state_bytes(v) for v in state)
    return 0


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--d-model", type=int, default=128)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--contexts", default="50,200,1000,4000")
    p.add_argument("--batches", default="1,16")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--tokens-per-step", type=int, default=3)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    d = a.d_model
    contexts = [int(c) for c in a.contexts.split(",")]
    batches = [int(b) for b in a.batches.split(",")]
    slstm_at = [1] if a.layers > 1 else []
    xl = xlstm_stack(d, a.layers, a.heads, slstm_at)
    gpt = CachedGpt(d, a.layers, a.heads).eval()
    n = a.tokens_per_step
    print(f"PyTorch {torch.__version__}, {a.threads} thread(s), d_model {d}, "
          f"{a.layers} layers, {a.heads} heads, {n} token(s) per step")
    with torch.no_grad():
        for b in batches:
            for c in contexts:
                # xLSTM: the state has a fixed size; run c tokens, then time steps.
                state = None
                x = torch.randn(b, 1, d)
                for _ in range(min(c, 50)):
                    _, state = xl.step(x, state)
                holder = [state]

                def xl_step(_):
                    for _ in range(n):
                        _, holder[0] = xl.step(x, holder[0])

                med, mean = timed(a.steps, xl_step)
                print(f"xlstm context {c} batch {b}: {med:.0f} us/step median "
                      f"({mean:.0f} mean), state {state_bytes(holder[0])} bytes")
                # Transformer: the ring cache holds c steps' tokens; each token attends to
                # all of them.
                slots = c * n
                cache = gpt.init_cache(b, slots)
                x = torch.randn(b, d)
                for i in range(5):
                    gpt.step(x, cache, i % slots)

                def gpt_step(i):
                    for k in range(n):
                        gpt.step(x, cache, (i * n + k) % slots)

                med, mean = timed(a.steps, gpt_step)
                print(f"gpt context {c} batch {b}: {med:.0f} us/step median "
                      f"({mean:.0f} mean), cache {state_bytes(cache)} bytes")


if __name__ == "__main__":
    main()
