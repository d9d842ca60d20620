"""Errors of the index storage, importable without SQLAlchemy (the CLI catches them)."""


class StoreError(RuntimeError):
    """Raised when the database cannot be opened, read or written."""
