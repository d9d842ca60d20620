"""Errors of the index storage, importable without SQLAlchemy (the CLI catches them)."""


class StoreError(RuntimeError):
    """Raised when the database cannot be opened, read or written."""


class OptionError(ValueError):
    """Raised for an indexing option that cannot be used (a bad value, or one the model cannot
    serve): the user's mistake, not the index's (``xmr`` exits 2 for it)."""
