"""headrace's benchmark suite: `python -m benches` (or `make bench`)."""
