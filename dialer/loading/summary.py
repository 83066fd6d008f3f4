"""The result of one load, as the user sees it (text or JSON)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

LISTED_REJECTS = 10_000  # rejected rows a summary names one by one (the rest are counted)


@dataclass
class LoadSummary:
    campaign: str
    campaign_action: str  # created | updated | unchanged
    source: str
    encoding: str = "utf-8"
    delimiter: str = ","
    rows_read: int = 0
    loaded: int = 0
    duplicates: int = 0
    suppressed: int = 0
    rejected: int = 0
    # rows whose number had no country code of its own, read in the campaign's default_region
    default_region_numbers: int = 0
    default_region: str | None = None
    new_rejects: int = 0
    rejects_by_reason: dict[str, int] = field(default_factory=dict)
    rejects_file: str | None = None
    previously_loaded_at: str | None = None
    seconds: float = 0.0
    # The campaign had completed, every contact final, and this load gave it contacts to
    # dial: it is active again.
    reopened: bool = False
    # The campaign completed for this reason (its goal met): what this load added waits and is
    # not dialed.
    completed_because: str | None = None
    # (row number, reason) of the first LISTED_REJECTS rejected rows, for the campaign API's
    # answer; the CLI has the rejects file instead.
    rejected_rows: list[tuple[int, str]] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        """Whether this load added anything (contacts, rejects, or a campaign change)."""
        return bool(
            self.loaded
            or self.suppressed
            or self.new_rejects
            or self.campaign_action != "unchanged"
        )

    def to_json(self) -> dict:
        document = asdict(self) | {"changed": self.changed}
        del document["rejected_rows"]
        return document

    def lines(self) -> list[str]:
        """Plain-text summary, one fact per line."""
        lines = [
            f"campaign {self.campaign}: {self.campaign_action}",
            f"read {self.rows_read} rows from {self.source}"
            f" ({self.encoding}, delimiter {self.delimiter!r}) in {self.seconds:.1f}s",
            f"  loaded      {self.loaded}",
            f"  duplicates  {self.duplicates}",
            f"  suppressed  {self.suppressed} (on the do-not-call list)",
            f"  rejected    {self.rejected}",
        ]

        lines += [f"    {count:>8}  {reason}" for reason, count in self.rejects_by_reason.items()]
        if self.default_region_numbers:
            lines.append(
                f"  national    {self.default_region_numbers} (no country code: read as"
                f" {self.default_region} numbers, the campaign's default_region)"
            )
        if self.rejects_file:
            lines.append(f"rejected rows written to {self.rejects_file}")
        if self.reopened:
            lines.append(
                f"campaign {self.campaign}: completed -> active (every contact was final; this"
                f" load added {self.loaded} to dial)"
            )
        if self.completed_because:
            lines.append(
                f"note: campaign {self.campaign} is completed ({self.completed_because}): the"
                f" contacts loaded ({self.loaded}) wait and are not dialed"
            )
        if not self.changed:
            when = (
                f" (first loaded {self.previously_loaded_at})" if self.previously_loaded_at else ""
            )
            lines.append(f"nothing changed: every row was already loaded{when}")
        return lines
