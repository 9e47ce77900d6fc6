from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from shared.data import load
from shared.data.registry import DataCorruptError
from shared.data.torch_adapter import images_to_float
from shared.metrics import feature_net, frechet_distance
from shared.metrics.feature_net import ImageFeatureNetwork, SmallConvNet, image_feature_network


def _net() -> ImageFeatureNetwork:
    torch.manual_seed(0)
    return ImageFeatureNetwork("mnist", SmallConvNet(), test_accuracy=0.5, sha256="0" * 64)


def test_features_predictions_and_stats() -> None:
    net = _net()
    x = torch.rand(7, 1, 28, 28) * 2 - 1
    feats = net.features(x)
    assert feats.shape == (7, 128) and feats.dtype == np.float32
    assert np.array_equal(net.predict(x), net.model.head(torch.from_numpy(feats)).argmax(1).numpy())
    stats = net.stats(x)
    assert stats.feature_net == net.name and "mnist" in net.name and stats.count == 7


def test_bad_input_and_unknown_dataset() -> None:
    with pytest.raises(ValueError, match=r"\(N, 1, 28, 28\)"):
        _net().features(torch.zeros(2, 3, 32, 32))
    with pytest.raises(ValueError, match="no feature network for 'cifar10'"):
        image_feature_network("cifar10")


# Golden values, computed once with the committed weights (python -m shared.metrics.feature_net build ...):
# FID between the first and second 500 test images. A change of weights or feature pipeline changes them.
GOLDEN_FID = {"mnist": 15.122345426118954, "fashion_mnist": 6.83033784574377}


@pytest.mark.parametrize("dataset", sorted(GOLDEN_FID))
def test_shipped_network_gives_golden_fid_without_any_cache(
    dataset: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    x = images_to_float(load(dataset, split="test")["images"][:1000])
    monkeypatch.setenv("ML_PAPERS_DATA", str(tmp_path))  # an empty data home: nothing trained or cached
    image_feature_network.cache_clear()
    net = image_feature_network(dataset)
    assert net.name.startswith(f"smallcnn-{dataset}-v2-{net.sha256[:8]}")
    assert frechet_distance(net.stats(x[:500]), net.stats(x[500:])) == pytest.approx(GOLDEN_FID[dataset], abs=1e-6)
    assert not list(tmp_path.iterdir())
    image_feature_network.cache_clear()


def test_modified_weights_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("manifest.json", "smallcnn-mnist-v2.safetensors"):
        (tmp_path / name).write_bytes((feature_net.WEIGHTS_DIR / name).read_bytes())
    with open(tmp_path / "smallcnn-mnist-v2.safetensors", "r+b") as fh:
        fh.seek(-4, 2)
        fh.write(b"\x00\x00\x00\x00")
    monkeypatch.setattr(feature_net, "WEIGHTS_DIR", tmp_path)
    monkeypatch.setattr(feature_net, "_MANIFEST", tmp_path / "manifest.json")
    image_feature_network.cache_clear()
    with pytest.raises(DataCorruptError, match="was modified"):
        image_feature_network("mnist")
    image_feature_network.cache_clear()
