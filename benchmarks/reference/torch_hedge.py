"""PyTorch CPU reference for benchmarks/hedge_unroll.py (never imported by the package).

Run in an environment with torch (not the project's), e.g.
    python benchmarks/reference/torch_hedge.py --steps 2 --threads 2

The hedge defense (Wu et al. 2021) as the official code runs it (``hedge_defense.py`` of
burcywu/hedge_defense, read, not copied): uniform start in [−ε, ε] NOT clipped before the first
forward, then ``hedge_steps`` times x ← Π_{B(x̃, ε) ∩ [0, 1]}(x + α·sign ∇ Σ_c CE(f(x), c)) (the
official loss KL(uniform ‖ softmax f(x)) has the same gradient up to a positive factor, so the
same signs), the model in eval mode. Prediction from the final point (one more forward without
gradient), the ``predict='final'`` mode of ``hedge_defense.defense.hedge``. Model, batch and
data as benchmarks/reference/torch_resnet.py (PreActResNet-18, random init, uniform images).
One timed step is one defense call on the batch.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from torch_resnet import PreActResNet18, emit, time_steps


def hedge(model, x, steps: int, eps: float, step_size: float):
    x_t = x + torch.empty_like(x).uniform_(-eps, eps)
    for _ in range(steps):
        x_t.requires_grad_(True)
        logits = model(x_t)
        k = logits.shape[-1]
        objective = (k * torch.logsumexp(logits, dim=1) - logits.sum(dim=1)).sum()
        (g,) = torch.autograd.grad(objective, x_t)
        x_t = x_t.detach() + step_size * g.sign()
        x_t = (x + (x_t - x).clamp(-eps, eps)).clamp(0, 1)
    with torch.no_grad():
        return model(x_t), x_t


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shape", default="32,32,3", help="H,W,C")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--hedge_steps", type=int, default=20)
    p.add_argument("--eps", type=float, default=0.031)
    p.add_argument("--step_size", type=float, default=0.007)
    p.add_argument("--steps", type=int, default=2, help="Timed defense calls.")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="")
    a = p.parse_args()
    h, w, c = (int(s) for s in a.shape.split(","))
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = PreActResNet18(c).eval()
    for q in model.parameters():
        q.requires_grad_(False)  # the defense differentiates with respect to the input only
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.random((a.batch, c, h, w), np.float32))
    call = lambda: hedge(model, x, a.hedge_steps, a.eps, a.step_size)
    timing = time_steps(call, a.warmup, a.steps)
    result = {
        "workload": "hedge_defense",
        "framework": "torch",
        "framework_version": torch.__version__,
        "threads": torch.get_num_threads(),
        "layout": "nchw",
        "image_shape": [h, w, c],
        "batch": a.batch,
        "hedge_steps": a.hedge_steps,
        "eps": a.eps,
        "step_size": a.step_size,
        **timing,
        "images_per_second": round(a.batch / timing["step_seconds_mean"], 3),
    }
    emit(result, a.out)


if __name__ == "__main__":
    main()
