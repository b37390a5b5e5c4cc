"""One registry of classifier backbones and ``create_model(name, num_classes, in_chans)`` (timm style).

Every registered network is wrapped in :class:`Classifier`: a convolutional trunk (``features``) that ends
in a spatial feature map, global average pooling, dropout and one linear ``head``. That uniform shape gives
every backbone the same three things the rest of the program relies on:

- ``forward(x)`` → logits;
- ``forward_features(x)`` → the last feature map (the Grad-CAM target layer, see :mod:`cxrviewer.ml.explain`);
- ``embed(x)`` → the pooled penultimate vector used for retrieval.

Backbones come from torchvision and are built without downloading anything. ``pretrained`` may name a local
weights file (an ImageNet ``.pth``/``.safetensors`` state dict or one of our checkpoints); a 3-channel first
convolution is folded into ``in_chans`` channels by summing/repeating its kernels, as timm does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn


@dataclass(frozen=True)
class ArchInfo:
    """What the registry knows about one architecture."""

    name: str
    family: str
    build_trunk: Callable[[], tuple[nn.Module, int]]  # returns (features, channels of the last map)
    description: str


_REGISTRY: dict[str, ArchInfo] = {}


def register(name: str, family: str, description: str):
    """Decorator adding a trunk builder ``() -> (features, out_channels)`` under ``name``."""

    def deco(fn: Callable[[], tuple[nn.Module, int]]) -> Callable[[], tuple[nn.Module, int]]:
        if name in _REGISTRY:
            raise ValueError(f"architecture {name!r} is registered twice")
        _REGISTRY[name] = ArchInfo(name, family, fn, description)
        return fn

    return deco


def list_models() -> list[str]:
    """Names accepted by :func:`create_model`."""
    return sorted(_REGISTRY)


def model_info(name: str) -> ArchInfo:
    """The :class:`ArchInfo` of a registered architecture (clear error for unknown names)."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"unknown architecture {name!r}; choose one of: {', '.join(list_models())}"
        ) from None


class Classifier(nn.Module):
    """Trunk → global average pool → dropout → linear head; see the module docstring."""

    def __init__(
        self, arch: str, features: nn.Module, feature_dim: int, num_classes: int, dropout: float = 0.2
    ):
        super().__init__()
        self.arch = arch
        self.features = features
        self.feature_dim = feature_dim
        self.num_classes = num_classes
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(feature_dim, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last convolutional feature map, shape (B, feature_dim, h, w)."""
        return self.features(x)

    def forward_head(self, fmap: torch.Tensor) -> torch.Tensor:
        """Logits from a feature map."""
        return self.head(self.dropout(torch.flatten(self.pool(fmap), 1)))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled penultimate features (not normalised), shape (B, feature_dim)."""
        return torch.flatten(self.pool(self.forward_features(x)), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _first_conv(module: nn.Module) -> tuple[nn.Module, str, nn.Conv2d]:
    for name, child in module.named_modules():
        if isinstance(child, nn.Conv2d):
            parent_name, _, attr = name.rpartition(".")
            parent = module.get_submodule(parent_name) if parent_name else module
            return parent, attr, child
    raise ValueError("network has no convolution")


def _adapt_in_chans(features: nn.Module, in_chans: int) -> None:
    """Replace the first convolution so the trunk takes ``in_chans`` channels."""
    parent, attr, conv = _first_conv(features)
    if conv.in_channels == in_chans:
        return
    new = nn.Conv2d(
        in_chans,
        conv.out_channels,
        kernel_size=conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        groups=conv.groups,
        bias=conv.bias is not None,
    )
    with torch.no_grad():
        new.weight.copy_(fold_conv_weight(conv.weight, in_chans))
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    setattr(parent, attr, new)


def fold_conv_weight(weight: torch.Tensor, in_chans: int) -> torch.Tensor:
    """Fold RGB kernels (O, 3, k, k) into ``in_chans`` channels keeping the response to gray input."""
    c = weight.shape[1]
    if c == in_chans:
        return weight
    if in_chans == 1:
        return weight.sum(dim=1, keepdim=True)
    reps = -(-in_chans // c)
    w = weight.repeat(1, reps, 1, 1)[:, :in_chans]
    return w * (c / in_chans)


def create_model(
    name: str,
    num_classes: int,
    in_chans: int = 1,
    pretrained: str | Path | None = None,
    dropout: float = 0.2,
) -> Classifier:
    """Build a registered classifier.

    Args:
        name: an architecture from :func:`list_models`.
        num_classes: size of the linear head.
        in_chans: input channels (1 for plain CXR, 3 for the lung-channel input).
        pretrained: optional local weights file; ImageNet torchvision state dicts and our own checkpoints
            are both accepted (head weights of a different shape are skipped).
        dropout: dropout before the head.
    """
    info = model_info(name)
    features, dim = info.build_trunk()
    if pretrained is not None:
        _load_trunk_weights(features, Path(pretrained))
    _adapt_in_chans(features, in_chans)
    return Classifier(name, features, dim, num_classes, dropout=dropout)


def _load_trunk_weights(features: nn.Module, path: Path) -> None:
    """Load a torchvision/ImageNet or our own state dict into a freshly built trunk (still 3-channel)."""
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
            state = state["model"]
    own = features.state_dict()
    matched: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        for candidate in _candidate_keys(key):
            if candidate in own:
                target = own[candidate]
                if target.shape == value.shape:
                    matched[candidate] = value
                elif target.dim() == 4 and value.dim() == 4 and target.shape[0] == value.shape[0]:
                    matched[candidate] = fold_conv_weight(value, target.shape[1])
                break
    if len(matched) < max(1, len(own) // 2):
        raise ValueError(
            f"{path.name} does not fit this architecture (only {len(matched)} of {len(own)} tensors matched)"
        )
    own.update(matched)
    features.load_state_dict(own)


# torchvision ResNets keep their layers at the top level; our trunk is an nn.Sequential of them by index.
_RESNET_ORDER = ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"]


def _candidate_keys(key: str) -> list[str]:
    """Trunk keys a torchvision or Classifier state-dict key may correspond to."""
    head, _, rest = key.partition(".")
    if head == "features":  # torchvision .features nets, or our own Classifier checkpoints
        return [rest, f"0.{rest}"]
    if head in _RESNET_ORDER:
        return [f"{_RESNET_ORDER.index(head)}.{rest}"]
    return [key]


def _resnet_trunk(builder: Callable[..., nn.Module]) -> tuple[nn.Module, int]:
    net = builder(weights=None)
    seq = nn.Sequential(*[getattr(net, n) for n in _RESNET_ORDER])
    return seq, net.fc.in_features


def _features_trunk(builder: Callable[..., nn.Module], out_dim: int, extra: list[nn.Module] | None = None):
    net = builder(weights=None)
    layers = [net.features, *(extra or [])]
    return (nn.Sequential(*layers) if extra else net.features), out_dim


def _register_torchvision() -> None:
    from torchvision import models as tv

    table = [
        # name, family, description, trunk builder
        ("resnet18", "resnet", "ResNet-18; papers 000, 002", lambda: _resnet_trunk(tv.resnet18)),
        ("resnet34", "resnet", "ResNet-34; paper 003", lambda: _resnet_trunk(tv.resnet34)),
        ("resnet50", "resnet", "ResNet-50; papers 000, 001, 003", lambda: _resnet_trunk(tv.resnet50)),
        (
            "squeezenet1_1",
            "squeezenet",
            "SqueezeNet 1.1; paper 000",
            lambda: _features_trunk(tv.squeezenet1_1, 512),
        ),
        (
            "densenet121",
            "densenet",
            "DenseNet-121; paper 000",
            lambda: _features_trunk(tv.densenet121, 1024, [nn.ReLU(inplace=False)]),
        ),
        (
            "vgg16",
            "vgg",
            "VGG-16 conv trunk with a GAP head; paper 004",
            lambda: _features_trunk(tv.vgg16, 512),
        ),
        (
            "vgg19",
            "vgg",
            "VGG-19 conv trunk with a GAP head; paper 004",
            lambda: _features_trunk(tv.vgg19, 512),
        ),
        (
            "mobilenet_v3_small",
            "mobilenet",
            "MobileNetV3-Small: small and fast on CPU",
            lambda: _features_trunk(tv.mobilenet_v3_small, 576),
        ),
        (
            "mobilenet_v3_large",
            "mobilenet",
            "MobileNetV3-Large: fast on CPU",
            lambda: _features_trunk(tv.mobilenet_v3_large, 960),
        ),
        (
            "efficientnet_b0",
            "efficientnet",
            "EfficientNet-B0: accurate for its CPU cost",
            lambda: _features_trunk(tv.efficientnet_b0, 1280),
        ),
    ]
    for name, family, description, build in table:
        register(name, family, description)(build)


_register_torchvision()
