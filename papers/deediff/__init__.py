"""DeeDiff: Dynamic Uncertainty-Aware Early Exiting for Accelerating Diffusion Model Generation (arXiv 2309.17074)."""
