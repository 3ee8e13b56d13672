"""Runs the OFFICIAL StRA PyTorch modules and dumps weights, inputs and outputs to an .npz.

NOT imported by the project (it needs torch). Run it in a separate torch venv against a copy of
shenao-zhang/StRA@21cc7c3 ``models/`` kept OUTSIDE the project (README, 'Check against the
official code'):

    python benchmarks/compare_stra/torch_side.py OFFICIAL_DIR OUT.npz [--full]

OFFICIAL_DIR holds ``models/{StRARes,component,stru_mask_value,__init__}.py``. Weights are seeded
random (BN affine parameters and running statistics too, so eval mode is non-trivial).
``python -m jaxpapers.tools.stra_check_official --npz=OUT.npz`` then compares our modules.
"""

import sys
import types

import numpy as np
import torch
import torch.nn as nn


def conv3x3(i, o, stride=1, groups=1, dilation=1):
    return nn.Conv2d(
        i, o, 3, stride=stride, padding=dilation, groups=groups, bias=False, dilation=dilation
    )


def conv1x1(i, o, stride=1):
    return nn.Conv2d(i, o, 1, stride=stride, bias=False)


class Bottleneck(nn.Module):
    """torchvision's v1.5 ResNet bottleneck (stand-in: torchvision itself is not installed)."""

    expansion = 4

    def __init__(
        self,
        inplanes,
        planes,
        stride=1,
        downsample=None,
        groups=1,
        base_width=64,
        dilation=1,
        norm_layer=None,
    ):
        super().__init__()
        norm_layer = norm_layer or nn.BatchNorm2d
        width = int(planes * (base_width / 64.0)) * groups
        self.conv1, self.bn1 = conv1x1(inplanes, width), norm_layer(width)
        self.conv2 = conv3x3(width, width, stride, groups, dilation)
        self.bn2 = norm_layer(width)
        self.conv3, self.bn3 = conv1x1(width, planes * 4), norm_layer(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample, self.stride = downsample, stride

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        idt = x if self.downsample is None else self.downsample(x)
        return self.relu(out + idt)


def import_official(official_dir):
    # cv2 is imported but unused by component.py; torchvision only supplies Bottleneck/conv1x1.
    sys.modules["cv2"] = types.ModuleType("cv2")
    tv, tvm = types.ModuleType("torchvision"), types.ModuleType("torchvision.models")
    tvr = types.ModuleType("torchvision.models.resnet")
    tvr.Bottleneck, tvr.conv1x1, tvr.conv3x3 = Bottleneck, conv1x1, conv3x3
    tv.models, tvm.resnet = tvm, tvr
    sys.modules.update(
        {"torchvision": tv, "torchvision.models": tvm, "torchvision.models.resnet": tvr}
    )
    sys.path.insert(0, official_dir)
    import models.StRARes as official

    return official


def randomise(mod, g):
    for m in mod.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.weight.data = torch.rand(n, generator=g) + 0.5
            m.bias.data = torch.randn(n, generator=g) * 0.1
            m.running_mean.data = torch.randn(n, generator=g) * 0.1
            m.running_var.data = torch.rand(n, generator=g) + 0.5
        if isinstance(m, nn.Conv2d) and m.bias is not None:
            m.bias.data = torch.randn(m.bias.shape, generator=g) * 0.1


def dump(prefix, module, out):
    # copy(): train-mode forwards update BN running stats in place.
    for k, v in module.state_dict().items():
        out[f"{prefix}sd/{k}"] = v.detach().numpy().copy()


def main(official_dir, path, full):
    s = import_official(official_dir)
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    out = {}
    # 1) One LocalAttn (+ MoE): stage-5 size C=512, 8 heads, k=3, ratio 4, stride 1, 16x8 map.
    blk = s.LocalAttn(512, 512, 512, kernel_size=3, dilation=1, stride=1, groups=8, ratio=4)
    randomise(blk, g)
    x = torch.randn(4, 512, 16, 8, generator=g)
    dump("block/", blk, out)
    out["block/x"] = x.numpy()
    for mode in ("eval", "train"):
        blk.train(mode == "train")
        with torch.no_grad():
            s.fnorm_loss = torch.zeros(16)
            out[f"block/y_{mode}"] = blk(x).numpy()
            out[f"block/div_{mode}"] = s.fnorm_loss[-4:].numpy()  # left-padded to 16 samples
    if full:
        # 2) The whole re-ID StRA-ResNet-50 (751 ids) on 256x128 inputs, eval-mode 512-d
        # feature. (Train mode calls .cuda() on the diversity loss: not runnable on CPU.)
        net = s.StRAResNet(
            layers=[3, 4, 6, 3],
            loss="softmax",
            num_classes=751,
            ratio=4,
            head=8,
            rate=1,
            sa_dilation=1,
            last_stride=1,
            kernel_size=3,
            sa_conv=s.LocalAttn,
        )
        randomise(net, g)
        xi = torch.randn(2, 3, 256, 128, generator=g)
        dump("net/", net, out)
        out["net/x"] = xi.numpy()
        net.eval()
        with torch.no_grad():
            out["net/feat_eval"] = net(xi).numpy()
        print("official StRA-ResNet-50 (751 ids) params:", sum(p.numel() for p in net.parameters()))
    np.savez(path, **out)
    print("saved", path, len(out), "arrays")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], "--full" in sys.argv)
