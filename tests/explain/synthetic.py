"""Synthetic model/data pairs whose decision depends on a known patch (shared by the explain tests)."""

from __future__ import annotations

import torch
from torch import nn

from cxrviewer.ml.registry import Classifier, create_model

SQUARE = 12  # side of the deciding square, pixels


def square_images(n: int, size: int, corner: tuple[int, int], seed: int, distractor: bool = True):
    """``n`` noisy 1-channel images, labels alternating 0/1; class 1 has a bright square at ``corner``.

    With ``distractor`` every image (both classes) also gets a bright bar at a random place, so brightness
    alone does not decide the class: the square's place does.
    """
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, size, size, generator=g) * 0.5
    y = torch.arange(n) % 2
    r0, c0 = corner
    for i in range(n):
        if distractor:
            r, c = torch.randint(0, size - SQUARE, (2,), generator=g).tolist()
            x[i, 0, r : r + SQUARE // 3, c : c + SQUARE] += 2.0
        if y[i] == 1:
            x[i, 0, r0 : r0 + SQUARE, c0 : c0 + SQUARE] += 2.0
    return x, y


def train_square_model(size: int = 64, corner: tuple[int, int] = (6, 42), steps: int = 30) -> Classifier:
    """SqueezeNet 1.1 (no batch norm, so a few Adam steps suffice) trained to find the square."""
    torch.manual_seed(0)
    model = create_model("squeezenet1_1", 2, 1, dropout=0.0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    for step in range(steps):
        x, y = square_images(24, size, corner, seed=step)
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def brightness_resnet18() -> Classifier:
    """A ResNet-18 with hand-set weights whose class-1 logit is the mean local brightness.

    The stem's channel 0 is a 7 × 7 box filter; every other block's residual branch is switched off (zero
    convolutions) so it passes its input on, and each downsampling block averages channel 0 over 3 × 3 with
    stride 2 in its main branch (zero shortcut); batch norms are identities. The last feature map is then the (ReLU'd, max-pooled, subsampled) local brightness, and the head reads it
    with +1 for class 1 and -1 for class 0. A bright square decides class 1 and must be the map's peak.
    """
    model = create_model("resnet18", 2, 1, dropout=0.0).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Conv2d):
                module.weight.zero_()
            elif isinstance(module, nn.BatchNorm2d):
                module.weight.fill_(1.0)
                module.bias.zero_()
                module.running_mean.zero_()
                module.running_var.fill_(1.0)
        stem = model.features[0]
        stem.weight[0, 0].fill_(1.0 / 49.0)
        for module in model.features.modules():
            if getattr(module, "downsample", None) is not None:  # the first block of layer2..layer4
                module.conv1.weight[0, 0].fill_(1.0 / 9.0)  # 3 x 3 average, stride 2: sees every input cell
                module.conv2.weight[0, 0, 1, 1] = 1.0  # then passed on unchanged; the shortcut stays zero
        model.head.weight.zero_()
        model.head.bias.zero_()
        model.head.weight[1, 0] = 1.0
        model.head.weight[0, 0] = -1.0
    return model
