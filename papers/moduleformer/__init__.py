"""ModuleFormer: Modularity Emerges from Mixture-of-Experts (Shen et al., arXiv 2306.04640)."""
