"""Benchmark harness: `python -m loadtest` measures cmp against a bare aiohttp ceiling."""
