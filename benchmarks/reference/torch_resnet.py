"""PyTorch CPU reference for benchmarks/resnet_step.py (never imported by the package).

Run in an environment with torch (not the project's), e.g.
    python benchmarks/reference/torch_resnet.py --shape 32,32,3 --steps 3 --threads 2
    python benchmarks/reference/torch_resnet.py --pgd_steps 10 --steps 1

Same workload as the JAX side: PreActResNet-18 (Rice et al.'s PreActBlock; 3x3 stem, four
stages of two blocks, BN momentum 0.1 eps 1e-5), SGD lr 0.1 momentum 0.9 weight decay 5e-4 on all
parameters, batch of random images in [0, 1) and random labels, no augmentation; with
``--pgd_steps`` L∞ PGD (uniform start, ε 8/255, step 2/255, model in eval mode for the attack,
train mode for the update). Warm-up steps are not timed; JSON out.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

EPS, STEP_SIZE = 8 / 255, 2 / 255


class PreActBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Conv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x):
        out = F.relu(self.bn1(x))
        shortcut = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + shortcut


class PreActResNet18(nn.Module):
    def __init__(self, cin=3, num_classes=10, width=64):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, width, 3, 1, 1, bias=False)
        layers, c = [], width
        for i in range(4):
            for j in range(2):
                cout = width * 2**i
                layers.append(PreActBlock(c, cout, 2 if i > 0 and j == 0 else 1))
                c = cout
        self.layers = nn.Sequential(*layers)
        self.bn = nn.BatchNorm2d(c)
        self.linear = nn.Linear(c, num_classes)

    def forward(self, x):
        out = F.relu(self.bn(self.layers(self.conv1(x))))
        return self.linear(out.mean(dim=(2, 3)))


def pgd(model, x, y, steps):
    model.eval()
    delta = torch.empty_like(x).uniform_(-EPS, EPS)
    delta = (x + delta).clamp(0, 1) - x
    for _ in range(steps):
        delta.requires_grad_(True)
        loss = F.cross_entropy(model(x + delta), y)
        (g,) = torch.autograd.grad(loss, delta)
        delta = (delta.detach() + STEP_SIZE * g.sign()).clamp(-EPS, EPS)
        delta = (x + delta).clamp(0, 1) - x
    model.train()
    return (x + delta).detach()


def time_steps(step, warmup: int, steps: int) -> dict:
    """Runs ``warmup`` untimed then ``steps`` timed calls of ``step``; the same timing fields as
    the JAX side (benchmarks/_timing.py): wall and process CPU seconds per call, load averages."""
    load_before = [round(v, 2) for v in os.getloadavg()]
    for _ in range(warmup):
        step()
    walls, cpus = [], []
    for _ in range(steps):
        c0, t0 = time.process_time(), time.perf_counter()
        step()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return {
        "compile_seconds": None,  # eager: no ahead-of-time compile
        "warmup_steps": warmup,
        "steps": steps,
        "step_seconds_mean": round(sum(walls) / len(walls), 4),
        "step_seconds_min": round(min(walls), 4),
        "step_seconds_max": round(max(walls), 4),
        "cpu_seconds_per_step": round(sum(cpus) / len(cpus), 4),
        "load_average_before": load_before,
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }


def emit(result: dict, out: str) -> None:
    text = json.dumps(result, indent=2)
    print(text)
    if out:
        with open(out, "w") as f:
            f.write(text + "\n")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shape", default="32,32,3", help="H,W,C")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--pgd_steps", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--channels_last", action="store_true")
    p.add_argument("--out", default="")
    a = p.parse_args()
    h, w, c = (int(s) for s in a.shape.split(","))
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    fmt = torch.channels_last if a.channels_last else torch.contiguous_format
    model = PreActResNet18(c).to(memory_format=fmt)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.random((a.batch, c, h, w), np.float32)).to(memory_format=fmt)
    y = torch.from_numpy(rng.integers(0, 10, a.batch)).long()

    def step():
        xt = pgd(model, x, y, a.pgd_steps) if a.pgd_steps else x
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(xt), y)
        loss.backward()
        opt.step()
        return loss

    timing = time_steps(step, a.warmup, a.steps)
    result = {
        "workload": "preact_resnet18_pgd_step" if a.pgd_steps else "preact_resnet18_train_step",
        "framework": "torch",
        "framework_version": torch.__version__,
        "threads": torch.get_num_threads(),
        "layout": "channels_last" if a.channels_last else "nchw",
        "image_shape": [h, w, c],
        "batch": a.batch,
        "pgd_steps": a.pgd_steps,
        **timing,
        "images_per_second": round(a.batch / timing["step_seconds_mean"], 3),
    }
    emit(result, a.out)


if __name__ == "__main__":
    main()
