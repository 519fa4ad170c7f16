"""The model factory: every listed architecture, class count and channel count trains a step; weights load."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torchvision
from safetensors.torch import save_file

from medkd.models import FEATURE_KINDS, ModelError, WithFeatures, classifier_name, create_model, load_checkpoint

ARCHITECTURES = ["baseline_cnn", "compact_cnn", "resnet18", "resnet34", "resnet50", "densenet121", "efficientnet_b0",
                 "efficientnet_b1", "efficientnet_b2", "efficientnet_b3", "mobilenet_v2", "mobilenet_v3_small",
                 "mobilenet_v3_large", "vgg16", "efficientnet_lite0", "efficientnet_lite2"]


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_builds_and_trains_a_step(name):
    torch.manual_seed(0)
    for num_classes in (2, 7):
        for in_chans in (1, 3):
            model = create_model(name, num_classes=num_classes, in_chans=in_chans)
            images = torch.randn(2, in_chans, 64, 64)
            logits = model(images)
            assert logits.shape == (2, num_classes)
            torch.nn.functional.cross_entropy(logits, torch.tensor([0, num_classes - 1])).backward()
            grads = [p.grad for p in model.parameters() if p.requires_grad]
            assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("name", ["compact_cnn", "efficientnet_lite0", "resnet18"])
def test_guard_features_come_from_the_same_pass_as_the_logits(name):
    """Every kind of guard features beside logits equal to the plain model's; blocks holds one pooled map per
    resolution (compact_cnn: its three blocks and the last pool), pooled the last of them."""
    torch.manual_seed(0)
    model = create_model(name, num_classes=2, in_chans=1).eval()
    images = torch.randn(3, 1, 64, 64)
    widths = {}
    with torch.no_grad():
        for kind in FEATURE_KINDS:
            logits, features = WithFeatures(model, kind, images)(images)
            torch.testing.assert_close(logits, model(images), atol=1e-5, rtol=1e-5)
            assert features.shape[0] == 3 and torch.isfinite(features).all()
            widths[kind] = features.shape[1]
    assert widths["blocks"] > widths["pooled"]
    if name == "compact_cnn":
        assert widths == {"penultimate": 64, "pooled": 128, "blocks": 32 + 64 + 128 + 128}
        assert WithFeatures(model, "blocks", images).maps == ["2", "6", "10", "11"]
    with pytest.raises(ModelError, match="unknown guard features 'gram'"):
        WithFeatures(model, "gram", images)


def test_unknown_model_lists_what_exists():
    with pytest.raises(ModelError, match="unknown model 'resnet19'.*resnet18"):
        create_model("resnet19", 2)
    with pytest.raises(ModelError, match="weights .imagenet.: compact_cnn has no such weight set"):
        create_model("compact_cnn", 2, weights="imagenet")


def test_local_checkpoint_with_prefix_and_other_head(tmp_path):
    source = create_model("resnet18", num_classes=5, in_chans=3)
    state = {f"module.{k}": v for k, v in source.state_dict().items()}
    torch.save({"state_dict": state}, tmp_path / "ddp.pth")
    grey = create_model("resnet18", num_classes=2, in_chans=1)
    report = load_checkpoint(grey, tmp_path / "ddp.pth")
    assert report.prefix == "module." and report.head_skipped and not report.missing and not report.unexpected
    folded = source.conv1.weight.sum(dim=1, keepdim=True)
    assert torch.equal(grey.conv1.weight, folded)
    assert torch.equal(grey.layer4[1].conv2.weight, source.layer4[1].conv2.weight)
    assert grey.get_submodule(classifier_name(grey)).out_features == 2


def test_safetensors_through_the_factory_and_mismatch_errors(tmp_path):
    source = create_model("compact_cnn", num_classes=3)
    save_file(source.state_dict(), tmp_path / "w.safetensors")
    loaded = create_model("compact_cnn", num_classes=3, weights=str(tmp_path / "w.safetensors"))
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(source.eval()(x), loaded.eval()(x))
    with pytest.raises(ModelError, match="missing keys"):
        create_model("resnet18", num_classes=3, weights=str(tmp_path / "w.safetensors"))
    with pytest.raises(ModelError, match="not found"):
        create_model("resnet18", num_classes=3, weights=str(tmp_path / "nope.safetensors"))


def test_imagenet_goes_through_torchvision_cache_and_explains_offline(tmp_path, monkeypatch):
    """ImageNet weights come from torchvision's own API and cache. The test puts a checkpoint it made
    where that cache looks (no real weights exist here) and checks the same API loads it."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    weights = torchvision.models.ResNet18_Weights.DEFAULT
    cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(ModelError, match=f"place it at {cached}"):
        create_model("resnet18", num_classes=2, weights="imagenet")
    made_here = torchvision.models.resnet18()
    cached.parent.mkdir(parents=True, exist_ok=True)
    torch.save(made_here.state_dict(), cached)
    model = create_model("resnet18", num_classes=2, in_chans=1, weights="imagenet")
    assert torch.equal(model.layer1[0].conv1.weight, made_here.layer1[0].conv1.weight)
    assert torch.equal(model.conv1.weight, made_here.conv1.weight.sum(dim=1, keepdim=True))
