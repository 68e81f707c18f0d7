"""The package version (its own module, so that modules below the package face can read it)."""

__version__ = "0.1.0"
