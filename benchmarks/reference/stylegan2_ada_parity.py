"""Parity of a converted stylegan2-ada-pytorch pickle with the official networks (two halves).

1. In a PyTorch environment (``pip install torch numpy``), with a checkout of
   NVlabs/stylegan2-ada-pytorch (imported from ``--repo``; nothing of it is copied here):

       python benchmarks/reference/stylegan2_ada_parity.py make --repo CHECKOUT --dir DIR

   builds a small official ``Generator`` / ``Discriminator`` (resolution 32, z = w = 64, 2
   mapping layers, ``channel_base`` 1024, ``channel_max`` 64, minibatch-std group 4, with the
   official training's ``num_fp16_res`` 4 and ``conv_clamp`` 256), moves every bias, noise
   strength and ``w_avg`` off its initial value (a fresh network has zero noise strengths, which
   would hide the noise buffers) and G_ema off G, pickles ``dict(G, D, G_ema, ...)`` as
   ``training/training_loop.py`` writes snapshots (``DIR/network-snapshot.pkl``), reloads it
   with ``pickle.load`` (what ``legacy.load_network_pkl`` does for a non-TF pickle; that module
   needs ``click``) and stores the reference outputs in
   ``DIR/reference.npz``: G_ema images for seeds 0-3 (``z = RandomState(seed).randn(z_dim)``,
   ``noise_mode='const'``, truncation psi 1 and 0.7, float32: ``force_fp32=True``) and D logits
   of the psi-1 images.

2. In the project's environment, from the repository root:

       python benchmarks/reference/stylegan2_ada_parity.py check --dir DIR

   converts the pickle with ``python -m jaxpapers.tools.convert_stylegan2``, renders the same
   seeds with ``jaxpapers.tools.generate`` (the settings the converter recorded, psi 1 and 0.7,
   ``noise_mode='const'``: clipped to [-1, 1] as that tool does) and with our Generator directly
   (unclipped), runs our Discriminator on the official images, and prints the max abs
   differences as JSON.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import pickle
import shutil
import subprocess
import sys
import types

SEEDS = (0, 1, 2, 3)
PSIS = (1.0, 0.7)
PKL, REF = "network-snapshot.pkl", "reference.npz"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("mode", choices=("make", "check"))
    p.add_argument("--dir", required=True, help="Folder for the pickle and the reference.")
    p.add_argument("--repo", default="", help="stylegan2-ada-pytorch checkout (make).")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (make).")
    args = p.parse_args(argv)
    if args.mode == "make" and not os.path.isfile(os.path.join(args.repo, "legacy.py")):
        p.error(f"--repo {args.repo!r} is not a stylegan2-ada-pytorch checkout.")
    return args


def make(args) -> None:
    import numpy as np
    import torch

    sys.path.insert(0, os.path.abspath(args.repo))
    sys.modules.setdefault("requests", types.ModuleType("requests"))  # URL downloads only
    from training import networks

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    common = dict(c_dim=0, img_resolution=32, img_channels=3)
    widths = dict(channel_base=1024, channel_max=64, num_fp16_res=4, conv_clamp=256)
    G = networks.Generator(
        z_dim=64, w_dim=64, mapping_kwargs=dict(num_layers=2), synthesis_kwargs=widths, **common
    )
    D = networks.Discriminator(epilogue_kwargs=dict(mbstd_group_size=4), **widths, **common)
    with torch.no_grad():  # As after some training: nothing at its initial value.
        for net in (G, D):
            for name, p in net.named_parameters():
                if name.endswith(("bias", "noise_strength")):
                    p.add_(0.2 * torch.randn_like(p))
        G.mapping.w_avg.copy_(G.mapping(torch.randn([256, 64]), None)[:, 0].mean(0))
        G_ema = copy.deepcopy(G)
        for p in G.parameters():
            p.add_(0.05 * torch.randn_like(p))
    os.makedirs(args.dir, exist_ok=True)
    snapshot = dict(training_set_kwargs=dict(resolution=32))  # training_loop.py's snapshot
    for name, module in (("G", G), ("D", D), ("G_ema", G_ema), ("augment_pipe", None)):
        if module is not None:
            module = copy.deepcopy(module).eval().requires_grad_(False).cpu()
        snapshot[name] = module
    path = os.path.join(args.dir, PKL)
    with open(path, "wb") as f:
        pickle.dump(snapshot, f)
    with open(path, "rb") as f:  # runs the pickled module source, as the official loader does
        nets = pickle.load(f)
    g_ema, d = nets["G_ema"], nets["D"]
    z = np.stack([np.random.RandomState(s).randn(g_ema.z_dim) for s in SEEDS])
    c = torch.zeros([len(SEEDS), 0])
    out = {"z": z}
    with torch.no_grad():
        for psi in PSIS:
            img = g_ema(
                torch.from_numpy(z), c, truncation_psi=psi, noise_mode="const", force_fp32=True
            )
            out[f"images_psi{psi}"] = img.permute(0, 2, 3, 1).numpy()  # NHWC
        img1 = torch.from_numpy(out["images_psi1.0"]).permute(0, 3, 1, 2).contiguous()
        out["logits"] = d(img1, c, force_fp32=True)[:, 0].numpy()
    np.savez(os.path.join(args.dir, REF), **out)
    print(json.dumps({"wrote": [path, os.path.join(args.dir, REF)], "torch": torch.__version__}))


def check(args) -> None:
    import numpy as np

    sys.path.insert(0, ROOT)  # this checkout's jaxpapers, whatever the current directory

    from jaxpapers import checkpoint
    from jaxpapers.methods.stylegan2_dgl.model import make_nets
    from jaxpapers.tools import generate

    ref = np.load(os.path.join(args.dir, REF))
    out = os.path.join(args.dir, "converted")
    shutil.rmtree(out, ignore_errors=True)  # this script's own output of an earlier check
    cmd = [sys.executable, "-m", "jaxpapers.tools.convert_stylegan2"]
    cmd += [f"--pkl={os.path.join(args.dir, PKL)}", f"--out={out}"]
    subprocess.run(cmd, check=True, cwd=ROOT)
    conf = generate.load_config(out)  # the settings convert_stylegan2 recorded in arch.json
    tree = checkpoint.restore_params(out)
    t = tree["teacher"]
    g_net, d_net = make_nets(conf, "teacher")
    z = generate.latents(list(SEEDS), int(conf.model.z_dim))
    assert np.array_equal(z, ref["z"].astype(np.float32)), "latents differ from the official ones"
    variables = {"params": t["g_ema"], "noise_const": {"synthesis": t["noise_const"]}}
    result = {}
    for psi in PSIS:
        want = ref[f"images_psi{psi}"]
        raw = np.asarray(g_net.apply(variables, z, t["w_avg"], psi, noise_mode="const"))
        tool = generate.generate(conf, tree, list(SEEDS), role="teacher", trunc=psi)
        result[f"psi{psi}"] = {
            "max_abs_diff_raw": float(np.abs(raw - want).max()),
            "max_abs_diff_generate_tool": float(np.abs(tool - np.clip(want, -1, 1)).max()),
            "max_abs_official": float(np.abs(want).max()),
        }
    images = ref["images_psi1.0"].astype(np.float32)
    logits = np.asarray(d_net.apply({"params": t["d"]}, images))
    result["d_logits"] = {
        "max_abs_diff": float(np.abs(logits - ref["logits"]).max()),
        "official": [round(float(v), 5) for v in ref["logits"]],
    }
    print(json.dumps(result, indent=2))


def main(argv=None):
    args = parse_args(argv)
    make(args) if args.mode == "make" else check(args)


if __name__ == "__main__":
    main()
