"""cmp — a consent-management backend: consent log, current state, audit proof."""

__version__ = "0.1.0"
