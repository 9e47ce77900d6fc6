"""MedDiffusion: Boosting Health Risk Prediction via Diffusion-based Data Augmentation (arXiv 2310.02520)."""
