"""Starting from weights: an ImageNet file in torchvision's format (``.pth`` and ``.safetensors``), two-stage
transfer (frozen trunk then all layers, Katsamenis et al.), a model folder or checkpoint as ``--init``, and
``--resume``. Every run is a real ``cxr-trainer train`` on the synthetic dataset (ResNet-18, 32 px)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import torchvision
from cxr_trainer.cli import main

from cxrviewer.ml.model_io import load_classifier
from cxrviewer.ml.registry import WeightsMismatchError, create_model

pytestmark = pytest.mark.timeout(300)

RESNET_TOP = ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"]


def _recognisable_resnet18() -> dict[str, torch.Tensor]:
    """A torchvision ResNet-18 state dict, as a downloaded ImageNet file holds it, with values no fresh
    initialisation has: seeded random kernels and non-trivial BatchNorm statistics."""
    g = torch.Generator().manual_seed(123)
    sd = torchvision.models.resnet18(weights=None).state_dict()
    for k, v in sd.items():
        if v.is_floating_point():
            sd[k] = torch.rand(v.shape, generator=g) * (0.5 if "running_var" not in k else 1.0) + (
                0.5 if "running_var" in k else -0.25
            )
    return sd


def _expected_trunk(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our Classifier's trunk keys for a torchvision ResNet state dict, first conv summed over RGB."""
    out = {}
    for k, v in sd.items():
        top, _, rest = k.partition(".")
        if top == "fc":
            continue
        out[f"features.{RESNET_TOP.index(top)}.{rest}"] = v
    out["features.0.weight"] = sd["conv1.weight"].sum(dim=1, keepdim=True)
    return out


def _trunk(model) -> dict[str, torch.Tensor]:
    return {k: v for k, v in model.state_dict().items() if k.startswith("features.")}


def _log(model_dir: Path) -> dict:
    return json.loads((model_dir / "train_log.json").read_text())


def _events(log: dict, kind: str) -> list[dict]:
    return [e for e in log["events"] if e["event"] == kind]


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("transfer")


@pytest.fixture(scope="module")
def imagenet_file(work) -> tuple[Path, dict[str, torch.Tensor]]:
    """``resnet18-f37072fd.pth`` saved with torch.save, as torchvision's download is."""
    sd = _recognisable_resnet18()
    path = work / "resnet18-f37072fd.pth"
    torch.save(sd, path)
    return path, sd


@pytest.fixture(scope="module")
def train(synthetic_dataset, work):
    def run(out: Path, *extra: str) -> int:
        args = ["train", "--data", str(synthetic_dataset), "--out", str(out), "--arch", "resnet18"]
        args += ["--size", "32", "--batch-size", "16", "--lr", "1e-3", "--threads", "1", "--no-augment"]
        return main([*args, "--cache-dir", str(work / "cache"), "--quiet", *extra])

    return run


@pytest.fixture(scope="module")
def two_stage_model(train, work, imagenet_file) -> Path:
    """ImageNet init → 2 epochs head only on cached features → 1 epoch all layers."""
    out = work / "two-stage"
    rc = train(
        out, "--init", str(imagenet_file[0]), "--two-stage", "yes", "--stage1-epochs", "2", "--epochs", "1"
    )
    assert rc == 0
    return out


def _assert_same(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor], atol: float = 0.0) -> None:
    assert set(got) == set(want)
    for k in want:
        torch.testing.assert_close(got[k], want[k].to(got[k].dtype), atol=atol, rtol=0, msg=k)


def test_imagenet_init_loads_the_trunk_and_stage1_trains_only_the_head(train, work, imagenet_file):
    path, sd = imagenet_file
    out = work / "stage1-only"
    assert train(out, "--init", str(path), "--two-stage", "yes", "--stage1-epochs", "3", "--epochs", "0") == 0
    model, manifest = load_classifier(out)
    # trunk = the file's tensors (BatchNorm statistics included), first conv = RGB kernels summed to 1 channel
    assert model.features[0].weight.shape == (64, 1, 7, 7)
    _assert_same(_trunk(model), _expected_trunk(sd), atol=1e-6)
    # the ImageNet 1000-class fc is not used: a new 3-class head, trained on cached trunk features
    assert model.head.weight.shape == (3, 512) and manifest.labels == ["normal", "pneumonia", "covid"]
    log = _log(out)
    init = _events(log, "setup")[0]["init"]
    assert init["trunk_tensors"] == 120 and init["first_conv"] == "3 -> 1 channels (RGB kernels summed)"
    assert init["skipped_head"] == ["fc.weight", "fc.bias"] and init["head_loaded"] is False
    assert [(e["stage"], e["trainable"]) for e in _events(log, "stage")] == [(1, "head"), (2, "all")]
    s1 = _events(log, "stage1_epoch")
    assert [e["epoch"] for e in s1] == [1, 2, 3] and s1[0]["val_loss"] != s1[-1]["val_loss"]
    assert _events(log, "stage1_done")[0]["cached_features"] is True
    assert _events(log, "epoch") == []


def test_stage1_without_cached_features_keeps_the_trunk_too(train, work, imagenet_file):
    path, sd = imagenet_file
    out = work / "stage1-uncached"
    args = ["--init", str(path), "--two-stage", "yes", "--no-cache-features", "--stage1-epochs", "1"]
    assert train(out, *args, "--epochs", "0") == 0
    model, _ = load_classifier(out)
    _assert_same(_trunk(model), _expected_trunk(sd), atol=1e-6)  # frozen, BatchNorm in eval mode
    log = _log(out)
    assert _events(log, "stage")[0] == {**_events(log, "stage")[0], "stage": 1, "cached_features": False}
    assert [e["frozen_trunk"] for e in _events(log, "epoch")] == [True]
    assert _events(log, "stage1_epoch") == []


def test_two_stage_transfer_then_updates_all_layers(two_stage_model, imagenet_file):
    model, manifest = load_classifier(two_stage_model)
    want = _expected_trunk(imagenet_file[1])
    params = {n for n, _ in model.named_parameters() if n.startswith("features.")}
    unchanged = [n for n in params if torch.equal(model.state_dict()[n], want[n])]
    assert params and unchanged == []  # stage 2 moved every trunk layer, the first conv included
    log = _log(two_stage_model)
    assert [e["stage"] for e in _events(log, "stage")] == [1, 2]
    assert len(_events(log, "stage1_epoch")) == 2
    assert [(e["epoch"], e["frozen_trunk"]) for e in _events(log, "epoch")] == [(1, False)]
    assert [h["frozen_trunk"] for h in manifest.training["history"]] == [False]
    assert (two_stage_model / "checkpoint.pt").is_file()


def test_safetensors_and_legacy_pickle_files_load_the_same(work, imagenet_file):
    from safetensors.torch import save_file

    path, sd = imagenet_file
    st = work / "resnet18.safetensors"
    save_file(sd, str(st))
    legacy = work / "resnet18-legacy.pth"
    torch.save(sd, legacy, _use_new_zipfile_serialization=False)
    want = _expected_trunk(sd)
    for f in (path, st, legacy):
        m = create_model("resnet18", num_classes=2, in_chans=1, pretrained=f)
        _assert_same(_trunk(m), want, atol=1e-6)
        assert m.init_weights.trunk_tensors == 120 and m.head.weight.shape == (2, 512)
    three = create_model("resnet18", num_classes=2, in_chans=3, pretrained=st)
    torch.testing.assert_close(three.features[0].weight, sd["conv1.weight"], atol=0, rtol=0)
    assert three.init_weights.first_conv is None


def test_a_file_for_another_architecture_is_refused_before_any_work(synthetic_dataset, work):
    r34 = work / "resnet34-b627a593.pth"
    torch.save(torchvision.models.resnet34(weights=None).state_dict(), r34)
    with pytest.raises(WeightsMismatchError, match=r"does not fit resnet18: 96 of its tensors have no place"):
        create_model("resnet18", 3, 1, pretrained=r34)
    mnet = work / "mobilenet.pth"
    torch.save(torchvision.models.mobilenet_v3_small(weights=None).state_dict(), mnet)
    with pytest.raises(WeightsMismatchError, match=r"trunk tensors are not in it"):
        create_model("resnet18", 3, 1, pretrained=mnet)
    junk = work / "notes.pth"
    junk.write_text("not weights")
    with pytest.raises(WeightsMismatchError, match="not a readable weights file"):
        create_model("resnet18", 3, 1, pretrained=junk)

    out = work / "refused"
    cache = work / "untouched-cache"
    args = [
        "--data",
        str(synthetic_dataset),
        "--out",
        str(out),
        "--init",
        str(r34),
        "--cache-dir",
        str(cache),
    ]
    rc = main(["train", *args, "--quiet"])
    assert rc == 1
    log = _log(out)
    assert log["status"] == "error" and "resnet34-b627a593.pth does not fit resnet18" in log["error"]
    assert not cache.exists()  # refused before any image was cached


def test_init_from_a_model_folder_or_a_checkpoint(train, work, two_stage_model):
    src, _ = load_classifier(two_stage_model)
    out = work / "from-folder"
    assert train(out, "--init", str(two_stage_model), "--two-stage", "no", "--epochs", "0") == 0
    model, _ = load_classifier(out)
    _assert_same(dict(model.state_dict()), dict(src.state_dict()), atol=1e-6)  # trunk and 3-class head
    init = _events(_log(out), "setup")[0]["init"]
    assert init["head_loaded"] is True and init["first_conv"] is None and init["skipped_head"] == []

    wrong = work / "wrong-arch"
    assert train(wrong, "--init", str(two_stage_model), "--arch", "mobilenet_v3_small", "--epochs", "0") == 1
    assert "its manifest.json says --arch resnet18" in _log(wrong)["error"]

    ckpt = torch.load(two_stage_model / "checkpoint.pt", map_location="cpu", weights_only=True)
    out = work / "from-checkpoint"
    assert (
        train(out, "--init", str(two_stage_model / "checkpoint.pt"), "--two-stage", "no", "--epochs", "0")
        == 0
    )
    model, _ = load_classifier(out)
    _assert_same(dict(model.state_dict()), ckpt["model"], atol=1e-6)


def test_a_model_folder_for_another_task_gives_its_trunk_and_a_new_head(two_stage_model):
    src, _ = load_classifier(two_stage_model)
    two = create_model(
        "resnet18", num_classes=2, in_chans=1, pretrained=two_stage_model / "model.safetensors"
    )
    _assert_same(_trunk(two), _trunk(src), atol=1e-6)
    assert two.head.weight.shape == (2, 512)
    assert two.init_weights.head_loaded is False
    assert sorted(two.init_weights.skipped_head) == ["head.bias", "head.weight"]


def test_resume_continues_after_the_last_checkpointed_epoch(train, work, two_stage_model, imagenet_file):
    out = work / "resumed"
    shutil.copytree(two_stage_model, out)
    before = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert before["epoch"] == 1 and before["stage1_done"] is True
    rc = train(out, "--init", str(imagenet_file[0]), "--two-stage", "yes", "--epochs", "2", "--resume")
    assert rc == 0
    log = _log(out)
    assert _events(log, "resumed") == [{**_events(log, "resumed")[0], "epoch": 1}]
    assert _events(log, "stage1_epoch") == []  # stage 1 is not redone
    assert [e["epoch"] for e in _events(log, "epoch")] == [2]
    _, manifest = load_classifier(out)
    assert [h["epoch"] for h in manifest.training["history"]] == [1, 2]

    fresh = work / "resume-nothing"
    assert train(fresh, "--epochs", "0", "--resume") == 0
    assert _events(_log(fresh), "resume_without_checkpoint")
