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

import re
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
        self.init_weights: WeightsReport | None = None  # set by create_model(pretrained=...)

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


@dataclass(frozen=True)
class WeightsReport:
    """What :func:`create_model` took from a ``pretrained`` weights file.

    Attributes:
        path: the file read.
        trunk_tensors: tensors loaded into the trunk (every trunk tensor the file has; all are required).
        first_conv: how the first convolution was adapted, e.g. ``"3 -> 1 channels (RGB kernels summed)"``,
            or None when the file already had the model's input channels.
        head_loaded: whether the linear head came from the file too (only one of our own checkpoints with a
            head of the same shape); otherwise it is freshly initialised for ``num_classes``.
        skipped_head: the file's classifier-head tensors that were not used (e.g. ImageNet ``fc.weight``).
    """

    path: str
    trunk_tensors: int
    first_conv: str | None
    head_loaded: bool
    skipped_head: tuple[str, ...]

    def to_dict(self) -> dict:
        return {
            "path": self.path,
            "trunk_tensors": self.trunk_tensors,
            "first_conv": self.first_conv,
            "head_loaded": self.head_loaded,
            "skipped_head": list(self.skipped_head),
        }


class WeightsMismatchError(ValueError):
    """A weights file that was saved from another architecture (or is not a state dict at all)."""


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
        pretrained: optional local weights file (``.pth``/``.pt``/``.safetensors``): a torchvision ImageNet
            state dict (e.g. ``resnet18-f37072fd.pth``), one of our model folders' ``model.safetensors`` or a
            training ``checkpoint.pt``. Every trunk tensor must be in it, and nothing else but a classifier
            head (else :class:`WeightsMismatchError`). A 3-channel first convolution is folded into
            ``in_chans`` channels (RGB kernels summed for one channel); the head is loaded only from our own
            files with a head of the same shape, otherwise re-initialised. What was loaded is in the returned
            model's ``init_weights`` (:class:`WeightsReport`).
        dropout: dropout before the head.

    Raises:
        FileNotFoundError: ``pretrained`` does not exist.
        WeightsMismatchError: the file does not fit ``name``.
    """
    info = model_info(name)
    features, dim = info.build_trunk()
    state = read_state_dict(Path(pretrained)) if pretrained is not None else None
    loaded = _load_trunk_weights(features, state, Path(pretrained), name) if state is not None else None
    _adapt_in_chans(features, in_chans)
    model = Classifier(name, features, dim, num_classes, dropout=dropout)
    if loaded is not None:
        n_trunk, file_in, head_keys = loaded
        head_loaded = _load_head(model, state)
        folded = None
        if file_in != in_chans:
            how = "RGB kernels summed" if in_chans == 1 else "kernels repeated and rescaled"
            folded = f"{file_in} -> {in_chans} channels ({how})"
        skipped = tuple(k for k in head_keys if not (head_loaded and k.startswith("head.")))
        model.init_weights = WeightsReport(str(pretrained), n_trunk, folded, head_loaded, skipped)
    return model


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a ``.safetensors`` file, a ``torch.save``-d state dict, or a checkpoint's ``model``
    entry (a DDP ``module.`` prefix is removed). Only tensors are unpickled (``weights_only``)."""
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same human message
        raise WeightsMismatchError(f"{path.name} is not a readable weights file ({exc})") from exc
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if not isinstance(state, dict) or not state or not all(torch.is_tensor(v) for v in state.values()):
        raise WeightsMismatchError(f"{path.name} holds no state dict (a mapping of names to tensors)")
    return {k.removeprefix("module."): v for k, v in state.items()}


_HEAD_PREFIXES = ("fc", "classifier", "head")  # torchvision ResNet / other torchvision nets / our Classifier


def _load_trunk_weights(
    features: nn.Module, state: dict[str, torch.Tensor], path: Path, arch: str
) -> tuple[int, int, tuple[str, ...]]:
    """Load a torchvision/ImageNet or our own state dict into a freshly built trunk (still 3-channel).

    Returns the number of trunk tensors loaded, the file's first-convolution input channels and the file's
    classifier-head keys (not loaded here)."""
    own = features.state_dict()
    first_key = next(k for k in own if own[k].dim() == 4)  # the first convolution's weight
    matched: dict[str, torch.Tensor] = {}
    unused, wrong_shape, skipped_head = [], [], []
    file_in = own[first_key].shape[1]
    for key, value in state.items():
        if key.partition(".")[0] in _HEAD_PREFIXES:
            skipped_head.append(key)
            continue
        candidate = next((c for c in _candidate_keys(key) if c in own), None)
        if candidate is None:
            unused.append(key)
            continue
        target = own[candidate]
        if target.shape == value.shape:
            matched[candidate] = value
        elif (
            candidate == first_key
            and value.dim() == 4
            and value.shape[0] == target.shape[0]
            and value.shape[2:] == target.shape[2:]
        ):
            matched[candidate] = fold_conv_weight(value, target.shape[1])
            file_in = value.shape[1]
        else:
            wrong_shape.append(f"{key} {tuple(value.shape)} (the model has {tuple(target.shape)})")
    missing = [k for k in own if k not in matched and not k.endswith("num_batches_tracked")]
    if missing or unused or wrong_shape:
        problems = []
        if missing:
            problems.append(
                f"{len(missing)} of the {len(own)} trunk tensors are not in it (e.g. {missing[0]})"
            )
        if unused:
            problems.append(f"{len(unused)} of its tensors have no place in {arch} (e.g. {unused[0]})")
        if wrong_shape:
            problems.append(f"{len(wrong_shape)} differ in shape (e.g. {wrong_shape[0]})")
        raise WeightsMismatchError(
            f"{path.name} does not fit {arch}: {'; '.join(problems)}. Was it saved from another "
            f"architecture? Pass the matching --arch (one of {', '.join(list_models())})."
        )
    own.update(matched)
    features.load_state_dict(own)
    return len(matched), int(file_in), tuple(skipped_head)


def _load_head(model: Classifier, state: dict[str, torch.Tensor]) -> bool:
    """Copy ``head.weight``/``head.bias`` from one of our checkpoints when their shapes fit."""
    w, b = state.get("head.weight"), state.get("head.bias")
    if w is None or b is None or w.shape != model.head.weight.shape or b.shape != model.head.bias.shape:
        return False
    with torch.no_grad():
        model.head.weight.copy_(w)
        model.head.bias.copy_(b)
    return True


# torchvision ResNets keep their layers at the top level; our trunk is an nn.Sequential of them by index.
_RESNET_ORDER = ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"]
# The DenseNet ImageNet files use the old names "norm.1"/"conv.2" that torchvision renames on loading.
_DENSENET_OLD_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var|num_batches_tracked))$"
)


def _candidate_keys(key: str) -> list[str]:
    """Trunk keys a torchvision or Classifier state-dict key may correspond to."""
    old = _DENSENET_OLD_KEY.match(key)
    if old:
        key = old.group(1) + old.group(2)
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
