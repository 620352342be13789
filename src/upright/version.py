"""The installed upright version (one home: the package, model.json and exported graphs read it)."""

__version__ = "0.1.0"
