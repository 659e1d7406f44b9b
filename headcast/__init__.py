"""headcast: real-time head reenactment for telepresence. This package is the CLI and the demo."""

__version__ = "0.1.0"
