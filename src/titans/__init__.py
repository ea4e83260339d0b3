"""Titans MLOps: the MLOps layer of the Titans Finance platform."""

import warnings

__version__ = "0.1.0"

# mlflow.pyfunc warns on import (about its own wrappers) and for every PythonModel without
# type hints on predict; Titans models validate their raw input themselves.
warnings.filterwarnings("ignore", message=r".*Add type hints to the `predict` method")
