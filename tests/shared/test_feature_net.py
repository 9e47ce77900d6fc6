from __future__ import annotations

import numpy as np
import pytest
import torch

from shared.metrics.feature_net import ImageFeatureNetwork, SmallConvNet, image_feature_network


def _net() -> ImageFeatureNetwork:
    torch.manual_seed(0)
    return ImageFeatureNetwork("mnist", SmallConvNet(), test_accuracy=0.5)


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
