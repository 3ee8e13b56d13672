"""Official stylegan2-ada-pytorch G+D iteration and lazy R1 phase on CPU, JSON out.

The PyTorch reference for ``python -m benchmarks.stylegan2_step``: the official networks and
loss (``training/networks.py``, ``training/loss.py`` of NVlabs/stylegan2-ada-pytorch, imported
from a checkout given by ``--repo``; nothing of it is copied here) at the same network:

    python benchmarks/reference/stylegan2_official.py --repo CHECKOUT --steps 2 --threads 2

Run it with a PyTorch environment (``pip install torch==2.13.0 numpy``), never the project's.
The network is the one ``benchmarks.stylegan2_step`` builds: resolution 32, RGB, z = w = 512,
2 mapping layers, widths 256 at 4-16 and 128 at 32 (``channel_base`` 4096, ``channel_max``
256), residual D, minibatch-std group 32, batch 32, no path-length reg, no style mixing, R1
gamma 0.01 every 16 D steps, Adam (0, 0.99) at lr 0.0025 with the official lazy-regularization
correction. Differences from the official ``--cfg=cifar`` run, kept to match our network: the
official ``cifar`` config uses 512 channels everywhere and the ``orig`` D; it also runs the top
four resolutions in float16 with ``conv_clamp`` 256 on GPU, which a CPU cannot do usefully, so
both sides run float32 here. On CPU the official custom CUDA ops (``bias_act``, ``upfirdn2d``,
``conv2d_gradfix``) fall back to their reference PyTorch implementations by themselves.

Phases follow ``training/training_loop.py``: ``plain`` = ``Gmain`` + ``Dmain`` optimizer steps
and the G EMA update (one G+D iteration without regularizers, like our phase (0, False, False));
``r1`` = the ``Dreg`` phase alone (D forward on reals, R1 gradient with ``create_graph``,
backward, Adam step): the cost our ``r1`` phase adds to ``plain``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import resource
import sys
import time
import types


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repo", required=True, help="Checkout of NVlabs/stylegan2-ada-pytorch.")
    p.add_argument("--what", default="plain,r1", help="Comma-separated phases: plain, r1.")
    p.add_argument("--steps", type=int, default=2, help="Timed iterations per phase.")
    p.add_argument("--warmup", type=int, default=1, help="Untimed iterations per phase.")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads.")
    p.add_argument("--out", default="", help="JSON output path (printed in any case).")
    args = p.parse_args(argv)
    what = [w for w in args.what.split(",") if w]
    if not what or set(what) - {"plain", "r1"}:
        p.error(f"--what takes plain and/or r1, got {args.what!r}.")
    if not os.path.isfile(os.path.join(args.repo, "training", "networks.py")):
        p.error(f"--repo {args.repo!r} is not a stylegan2-ada-pytorch checkout.")
    if args.steps < 1:
        p.error("--steps must be >= 1.")
    args.what = what
    return args


def load_average():
    return [round(v, 2) for v in os.getloadavg()]


def import_official(repo: str):
    """The official modules from ``repo``. ``dnnlib.util`` imports ``requests`` for URL downloads
    only; an empty stand-in lets the networks import in an environment without it."""
    sys.path.insert(0, os.path.abspath(repo))
    sys.modules.setdefault("requests", types.ModuleType("requests"))
    from torch_utils import misc
    from training import loss, networks

    return networks, loss, misc


def main(argv=None):
    args = parse_args(argv)
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    networks, loss_mod, misc = import_official(args.repo)
    res, batch = 32, args.batch
    common = dict(c_dim=0, img_resolution=res, img_channels=3)
    widths = dict(channel_base=4096, channel_max=256, num_fp16_res=0, conv_clamp=None)
    G = networks.Generator(
        z_dim=512, w_dim=512, mapping_kwargs=dict(num_layers=2), synthesis_kwargs=widths, **common
    )
    D = networks.Discriminator(
        architecture="resnet", epilogue_kwargs=dict(mbstd_group_size=32), **widths, **common
    )
    G.train().requires_grad_(False)
    D.train().requires_grad_(False)
    G_ema = copy.deepcopy(G).eval()
    loss = loss_mod.StyleGAN2Loss(
        device=torch.device("cpu"),
        G_mapping=G.mapping,
        G_synthesis=G.synthesis,
        D=D,
        style_mixing_prob=0,
        r1_gamma=0.01,
        pl_weight=0,
    )

    def adam(module, reg_interval):  # training_loop.py's lazy-regularization correction.
        r = reg_interval / (reg_interval + 1)
        return torch.optim.Adam(module.parameters(), lr=0.0025 * r, betas=(0.0, 0.99**r), eps=1e-8)

    g_opt, d_opt = adam(G, 4), adam(D, 16)
    rng = np.random.default_rng(0)
    reals = torch.from_numpy(rng.integers(0, 256, (batch, 3, res, res), np.uint8))
    real_img = reals.to(torch.float32) / 127.5 - 1
    real_c = torch.zeros([batch, 0])

    def run_phase(name, module, opt, gain):  # One training_loop.py phase (one GPU, no DDP).
        opt.zero_grad(set_to_none=True)
        module.requires_grad_(True)
        z = torch.randn([batch, G.z_dim])
        kw = dict(real_img=real_img, real_c=real_c, gen_z=z, gen_c=real_c, sync=True, gain=gain)
        loss.accumulate_gradients(phase=name, **kw)
        module.requires_grad_(False)
        for p in module.parameters():
            if p.grad is not None:
                misc.nan_to_num(p.grad, nan=0, posinf=1e5, neginf=-1e5, out=p.grad)
        opt.step()

    def plain():
        run_phase("Gmain", G, g_opt, 1)
        run_phase("Dmain", D, d_opt, 1)
        with torch.no_grad():  # G EMA (beta from ema_kimg; its value does not change the cost).
            for p_ema, p in zip(G_ema.parameters(), G.parameters(), strict=True):
                p_ema.copy_(p.lerp(p_ema, 0.999))
            for b_ema, b in zip(G_ema.buffers(), G.buffers(), strict=True):
                b_ema.copy_(b)

    def r1():
        run_phase("Dreg", D, d_opt, 16)

    result = {
        "workload": "stylegan2_cifar_res32",
        "framework": "pytorch-official",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "batch": batch,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "phases": {},
    }
    for name in args.what:
        fn = {"plain": plain, "r1": r1}[name]
        load_before = load_average()
        for _ in range(args.warmup):
            fn()
        walls, cpus = [], []
        for _ in range(args.steps):
            c0, t0 = time.process_time(), time.perf_counter()
            fn()
            walls.append(time.perf_counter() - t0)
            cpus.append(time.process_time() - c0)
        mean = sum(walls) / len(walls)
        result["phases"][name] = {
            "warmup_steps": args.warmup,
            "steps": args.steps,
            "step_seconds_mean": round(mean, 4),
            "step_seconds_min": round(min(walls), 4),
            "step_seconds_max": round(max(walls), 4),
            "cpu_seconds_per_step": round(sum(cpus) / len(cpus), 4),
            "images_per_second": round(batch / mean, 3),
            "load_average_before": load_before,
            "load_average_after": load_average(),
        }
    result["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
