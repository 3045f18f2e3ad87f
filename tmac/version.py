"""tmac's version, one place (written into golden vectors and saved weights)."""

__version__ = "0.1.0"
