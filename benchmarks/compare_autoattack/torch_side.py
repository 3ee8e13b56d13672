"""Reference side of the AutoAttack check: the official PyTorch AutoAttack (fra31/auto-attack,
standard version, L∞) on the weights and points written by ``jax_side.py``. Run it in a separate
venv with torch (never a dependency of the suite), with the official code on PYTHONPATH:

    python -m venv /tmp/tv && /tmp/tv/bin/pip install torch==2.13.0 numpy
    git clone https://github.com/fra31/auto-attack /tmp/auto-attack
    PYTHONPATH=/tmp/auto-attack /tmp/tv/bin/python benchmarks/compare_autoattack/torch_side.py OUT
"""

import json
import os
import sys
import time

import numpy as np
import torch
from autoattack import AutoAttack

OUT = sys.argv[1] if len(sys.argv) > 1 else "/tmp/aa_compare"
w = np.load(os.path.join(OUT, "mlp.npz"))
pts = np.load(os.path.join(OUT, "points.npz"))


class MLP(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = torch.nn.Linear(784, 256), torch.nn.Linear(256, 10)
        with torch.no_grad():  # ours stores x @ W (in, out); torch's Linear holds W^T
            self.fc1.weight.copy_(torch.from_numpy(w["w1"].T))
            self.fc1.bias.copy_(torch.from_numpy(w["b1"]))
            self.fc2.weight.copy_(torch.from_numpy(w["w2"].T))
            self.fc2.bias.copy_(torch.from_numpy(w["b2"]))

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x.reshape(x.shape[0], -1))))


model = MLP().eval()
x = torch.from_numpy(pts["x"]).permute(0, 3, 1, 2).contiguous()  # NHWC -> NCHW (1 channel)
y = torch.from_numpy(pts["y"]).long()
t0 = time.time()
aa = AutoAttack(model, norm="Linf", eps=0.1, version="standard", device="cpu", seed=0)
adv = aa.run_standard_evaluation(x, y, bs=len(x))
with torch.no_grad():
    clean = float((model(x).argmax(1) == y).float().mean())
    rob = float((model(adv).argmax(1) == y).float().mean())
res = {"clean": clean, "aa_standard": rob, "seconds": time.time() - t0, "n": len(x)}
print(res)
with open(os.path.join(OUT, "reference.json"), "w") as f:
    json.dump(res, f, indent=2)
