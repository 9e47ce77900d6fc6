"""adalink: replace this line with the paper's title and arXiv id."""
