"""NDIF."""

from lens.remote.model import RemoteModel, connect, simulated

__all__ = ["RemoteModel", "connect", "simulated"]
