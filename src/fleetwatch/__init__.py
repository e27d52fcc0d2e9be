"""fleetwatch: live and continuous queries for an osquery fleet."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("fleetwatch")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"

__all__ = ["__version__"]
