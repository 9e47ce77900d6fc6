"""One self-contained folder per paper. A paper imports only ``shared`` and third-party libraries."""
