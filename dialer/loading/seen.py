"""A fixed-size record of which numbers a load has already seen, to route rows cheaply.

Most rows of a contacts file carry a number seen for the first time; those go straight into
`contacts` with COPY. A row whose number *may* have been seen (a true repeat, or a hash
collision) goes to a stage table that one exact query resolves after its segment. Memory is 16 MiB
whatever the file's size; a larger file only sends more rows down the exact path.
"""

from __future__ import annotations

BITS = 1 << 27  # 16 MiB; about 0.7% false "maybe" at a million numbers


class SeenNumbers:
    def __init__(self) -> None:
        self._bits = bytearray(BITS // 8)
        self._mask = BITS - 1

    def add(self, number: str) -> bool:
        """Record `number`; return True if it may have been recorded before."""
        index = hash(number) & self._mask
        byte, bit = index >> 3, 1 << (index & 7)
        seen = self._bits[byte] & bit
        self._bits[byte] |= bit
        return bool(seen)
