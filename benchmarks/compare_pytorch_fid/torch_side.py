"""Reference side of the FID-Inception check: pytorch-fid's own InceptionV3, run in a SEPARATE
venv with torch (never a dependency of the suite):

    python -m venv /tmp/tv && /tmp/tv/bin/pip install torch==2.13.0 pytorch-fid==0.3.0 numpy
    /tmp/tv/bin/python benchmarks/compare_pytorch_fid/torch_side.py OUT_DIR
    python benchmarks/compare_pytorch_fid/jax_side.py OUT_DIR      # in the suite's venv

The published FID weights cannot be downloaded here, so the network gets random weights with
realistic BN statistics; they are saved in both ``torch.save`` formats (legacy, like the 2019
release file, and zip) together with pytorch-fid's pool3 features and fc logits on test images.
"""

import os
import sys

import numpy as np
import torch

torch.library.register_fake = lambda *a, **k: lambda f: f  # torchvision C-ops mismatch here
import pytorch_fid.inception as I  # noqa: E402  (after the patch above)

OUT = sys.argv[1] if len(sys.argv) > 1 else "/tmp/fid_compare"
os.makedirs(OUT, exist_ok=True)
torch.manual_seed(0)
I.load_state_dict_from_url = lambda *a, **k: None
orig = torch.nn.Module.load_state_dict
torch.nn.Module.load_state_dict = lambda self, sd, *a, **k: None
inc = I.fid_inception_v3()
torch.nn.Module.load_state_dict = orig
g = torch.Generator().manual_seed(1)
with torch.no_grad():
    for m in inc.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) * 0.5 + 0.75)
            m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
        if isinstance(m, torch.nn.Conv2d):  # He-like scale keeps activations O(1) through depth
            fan_in = m.weight[0].numel()
            m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)
    inc.fc.weight.copy_(torch.randn(inc.fc.weight.shape, generator=g) * 0.02)
    inc.fc.bias.copy_(torch.randn(inc.fc.bias.shape, generator=g) * 0.1)
inc.eval()
sd = {k: v for k, v in inc.state_dict().items() if not k.endswith("num_batches_tracked")}
legacy = os.path.join(OUT, "random_fid_inception_legacy.pth")
torch.save(sd, legacy, _use_new_zipfile_serialization=False)
torch.save(sd, os.path.join(OUT, "random_fid_inception_zip.pth"))
I.fid_inception_v3 = lambda: inc
model = I.InceptionV3([3], resize_input=True, normalize_input=True).eval()
rng = np.random.default_rng(0)
imgs = rng.random((6, 64, 48, 3)).astype(np.float32)  # non-square (the resize path), [0, 1]
imgs[3:] = np.linspace(0, 1, 48, dtype=np.float32)[None, None, :, None] * imgs[3:] ** 0.1
with torch.no_grad():
    pool = model(torch.from_numpy(imgs).permute(0, 3, 1, 2))[0][:, :, 0, 0]
    logits = inc.fc(pool)
np.savez(os.path.join(OUT, "torch_out.npz"), images=imgs, pool=pool.numpy(), logits=logits.numpy())
print("pytorch-fid pool3", tuple(pool.shape), "logits", tuple(logits.shape), "->", OUT)
