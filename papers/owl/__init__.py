"""OWL: outlier-weighted layerwise sparsity (arXiv 2310.05175) with magnitude, Wanda and SparseGPT pruners."""
