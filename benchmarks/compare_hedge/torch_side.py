"""Reference side of the hedge-defense check: the official ``HedgeDefense`` of
burcywu/hedge_defense (its defaults: 20 steps of 0.007 in an ε = 0.031 ball) on the MLP and the
test points written by ``benchmarks/compare_autoattack/jax_side.py``, without the random start
so the two implementations can be compared exactly. Separate venv with torch; official code on
PYTHONPATH (never part of the suite):

    PYTHONPATH=/path/to/hedge_defense /tmp/tv/bin/python benchmarks/compare_hedge/torch_side.py OUT
"""

import os
import sys

import numpy as np
import torch
from hedge_defense import HedgeDefense

OUT = sys.argv[1] if len(sys.argv) > 1 else "/tmp/aa_compare"
w = np.load(os.path.join(OUT, "mlp.npz"))
pts = np.load(os.path.join(OUT, "points.npz"))


class MLP(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = torch.nn.Linear(784, 256), torch.nn.Linear(256, 10)
        with torch.no_grad():
            self.fc1.weight.copy_(torch.from_numpy(w["w1"].T))
            self.fc1.bias.copy_(torch.from_numpy(w["b1"]))
            self.fc2.weight.copy_(torch.from_numpy(w["w2"].T))
            self.fc2.bias.copy_(torch.from_numpy(w["b2"]))

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x.reshape(x.shape[0], -1))))


model = MLP().eval()
x = torch.from_numpy(pts["x"]).permute(0, 3, 1, 2).contiguous()
x_hedge, sum_pred = HedgeDefense(random=False).hedge_defense(model, x)
np.savez(
    os.path.join(OUT, "hedge_reference.npz"),
    x_hedge=x_hedge.permute(0, 2, 3, 1).numpy(),
    sum_logits=sum_pred.detach().numpy(),
)
print("reference hedge written:", tuple(x_hedge.shape))
