"""ScaleMart flash-sale API."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("scalemart")
except PackageNotFoundError:  # running from a source tree (tests use PYTHONPATH=app)
    __version__ = "1.0.0"
