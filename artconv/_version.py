"""The package version: a leaf module, so code below the package (recipes) can read it
without importing `artconv` itself, and hatch reads it when building (pyproject.toml)."""

__version__ = "0.1.0"
