"""Named methods of the reproduction table: each is a set of config overrides on top of the run's config."""

from __future__ import annotations

from typing import Any

MED = {"model": "meddiffusion", "augment": True, "augmenter": "diffusion", "structure": "official"}
VARIANTS: dict[str, dict[str, Any]] = {
    # the official wiring: a plain LSTM predicts; step-wise attention only shapes what the diffusion sees.
    # Without augmentation this model IS the plain LSTM (same logits), so "LSTM" is its w/o-diffusion row.
    "MedDiffusion": {**MED, "attention": "stepwise", "attention_input": "per_visit"},
    "MedDiffusion (official first-visit attention)": {**MED, "attention_input": "first_visit"},
    "w/o step-wise attention": {**MED, "attention": "none"},
    "fixed attention 0.5/0.5": {**MED, "attention": "fixed"},
    "w/o synthetic CE": {**MED, "lambda_s": 0.0},
    "MedDiffusion, balanced batches": {**MED, "balanced": True},
    # not the official wiring: the attended sequence is what the predicting LSTM reads
    "attended-predictor MedDiffusion": {**MED, "structure": "attended"},
    "attended-predictor, first-visit attention": {**MED, "structure": "attended", "attention_input": "first_visit"},
    "attended-predictor w/o diffusion": {**MED, "structure": "attended", "augment": False},
    **{f"{name}{suffix}": {"model": model, "augment": aug, "augmenter": kind}
       for name, model in (("LSTM", "lstm"), ("GRU", "gru"), ("Transformer", "transformer"), ("RETAIN", "retain"),
                           ("Dipole", "dipole"))
       for suffix, aug, kind in (("", False, "diffusion"), (" + diffusion", True, "diffusion"),
                                 (" + medGAN", True, "gan"))},
    "LSTM, balanced batches": {"model": "lstm", "augment": False, "balanced": True},
}


def variant_overrides(name: str) -> dict[str, Any]:
    if name not in VARIANTS:
        raise ValueError(f"unknown variant {name!r}; known: {', '.join(VARIANTS)}")
    return VARIANTS[name]
