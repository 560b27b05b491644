"""HTTP layer: thin handlers, one route table (`routes.py`), one error shape."""
