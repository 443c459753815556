"""The store: what a single server keeps on disk so that its room outlives it.

Two layers, as in :mod:`chat.bus`: :mod:`chat.store.rows` turns lines and
orders into rows and rows back into them, checking everything read (no I/O);
:mod:`chat.store.archive` owns the SQLite file, its lock and the one thread
that writes it.
"""


class StoreError(Exception):
    """The store cannot be used; ``str()`` is one sentence for the user (the file's or the folder's problem)."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(problem)
        self.path = path
