"""Titans MLOps: the MLOps layer of the Titans Finance platform."""

__version__ = "0.1.0"
