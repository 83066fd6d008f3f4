"""A record the CSV reader could not read, as it travels to the validation workers.

In a module of its own with no imports, so the spawned workers stay light.
"""


class UnreadableRecord(list):
    """A record that could not be read (its line was too long): no values, only the reason."""

    def __init__(self, reason: str) -> None:
        super().__init__()
        self.reason = reason

    def __reduce__(self):  # to worker processes and back
        return (UnreadableRecord, (self.reason,))
