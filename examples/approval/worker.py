"""The worker entry point: ``tether worker examples.approval.worker:app``."""

from . import functions  # noqa: F401  (registers every function with the client)
from .client import app

if __name__ == "__main__":
    app.serve()
