"""SiD: Score identity Distillation (Zhou et al., ICML 2024) and few-step SiD with Zero-/Anti-CFG (arXiv 2505.12674)."""
