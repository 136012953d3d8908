"""openlive: a self-hosted Live API server with open models."""

__version__ = "0.1.0"
