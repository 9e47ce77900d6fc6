"""Named methods of the reproduction table: each is a set of config overrides on top of the run's config."""

from __future__ import annotations

from typing import Any

VARIANTS: dict[str, dict[str, Any]] = {
    "MedDiffusion": {"model": "meddiffusion", "augment": True, "attention": "stepwise"},
    "MedDiffusion (official first-visit attention)": {"model": "meddiffusion", "augment": True,
                                                      "attention_input": "first_visit"},
    "w/o step-wise attention": {"model": "meddiffusion", "augment": True, "attention": "none"},
    "fixed attention 0.5/0.5": {"model": "meddiffusion", "augment": True, "attention": "fixed"},
    "w/o synthetic CE": {"model": "meddiffusion", "augment": True, "lambda_s": 0.0},
    "w/o diffusion (attention LSTM)": {"model": "meddiffusion", "augment": False},
    **{f"{name}{suffix}": {"model": model, "augment": aug}
       for name, model in (("LSTM", "lstm"), ("GRU", "gru"), ("Transformer", "transformer"), ("RETAIN", "retain"),
                           ("Dipole", "dipole"))
       for suffix, aug in (("", False), (" + diffusion", True))},
}


def variant_overrides(name: str) -> dict[str, Any]:
    if name not in VARIANTS:
        raise ValueError(f"unknown variant {name!r}; known: {', '.join(VARIANTS)}")
    return VARIANTS[name]
