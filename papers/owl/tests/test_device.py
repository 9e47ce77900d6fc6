"""The device/dtype path: device choice, clear errors, and pruner math that follows the weights' device and dtype.

No GPU is lent to this task, so CUDA itself is never exercised here: the CPU stands in, the "meta" device checks
that no tensor is silently created on the CPU, and a machine without CUDA must refuse ``device=cuda`` clearly.
"""

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from papers.owl import train
from papers.owl.models import load_model, resolve_device
from papers.owl.pruners import magnitude_mask, sparsegpt_prune, wanda_mask
from shared.runs import ConfigError

SMOKE = str(Path(__file__).parents[1] / "configs" / "smoke.yaml")


def test_auto_picks_cuda_when_available_else_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_asking_for_cuda_without_cuda_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        train.main(["--config", SMOKE, "--out", str(tmp_path), "device=cuda"])


@pytest.mark.parametrize("override,message", [("device=tpu", "device"), ("dtype=int8", "dtype")])
def test_bad_device_or_dtype_is_refused(tmp_path: Path, override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        train.main(["--config", SMOKE, "--out", str(tmp_path), override])


def test_device_cpu_gives_the_same_model_as_auto_on_a_cpu_machine(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for device in ("cpu", "auto"):
        train.main(["--config", SMOKE, "--out", str(tmp_path / device), f"device={device}", "method=owl_wanda"])
    a = load_file(tmp_path / "cpu" / "pruned_model" / "model.safetensors")
    b = load_file(tmp_path / "auto" / "pruned_model" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_float16_model_is_pruned_and_saved_in_float16(tmp_path: Path) -> None:
    model, _ = load_model("tiny_llama", device="cpu", dtype="float16")
    assert {p.dtype for p in model.parameters()} == {torch.float16}
    metrics = train.main(["--config", SMOKE, "--out", str(tmp_path), "dtype=float16", "method=owl_sparsegpt"])
    assert metrics["overall_sparsity"] == pytest.approx(0.7, abs=0.02)
    weights = load_file(tmp_path / "pruned_model" / "model.safetensors")
    assert {w.dtype for w in weights.values()} == {torch.float16}


def test_masks_are_made_on_the_weights_device() -> None:
    """On "meta" any tensor created on the CPU by mistake would make these calls fail."""
    weight, norms = torch.empty(8, 16, device="meta"), torch.empty(16, device="meta")
    for mask in (magnitude_mask(weight, 0.5), wanda_mask(weight, norms, 0.5), wanda_mask(weight, norms, 0.5, (2, 4)),
                 magnitude_mask(weight, 0.5, (2, 4))):
        assert mask.device.type == "meta" and mask.dtype == torch.bool and mask.shape == weight.shape


def test_pruners_on_float16_weights_match_float32_and_keep_the_dtype() -> None:
    torch.manual_seed(0)
    weight = torch.randn(16, 64).half()  # exactly representable in both dtypes
    x = torch.randn(256, 64)
    norms, hessian = (x**2).sum(0), 2 * x.T @ x / 256
    assert torch.equal(wanda_mask(weight, norms, 0.6), wanda_mask(weight.float(), norms, 0.6))
    assert torch.equal(magnitude_mask(weight, 0.6), magnitude_mask(weight.float(), 0.6))
    half, full = sparsegpt_prune(weight, hessian, 0.6), sparsegpt_prune(weight.float(), hessian, 0.6)
    assert half.dtype == torch.float16 and full.dtype == torch.float32
    assert torch.equal(half == 0, full == 0)  # same mask: the math runs in float32 either way
    torch.testing.assert_close(half, full.half(), atol=0, rtol=0)
