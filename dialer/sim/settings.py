"""The simulated provider's knobs, parsed from the `dialer sim-provider` options."""

from __future__ import annotations

from dataclasses import dataclass, field

from dialer.durations import Rate, parse_duration, parse_rate

# The simulator's callback secret unless --secret says otherwise (a sim account's default too):
# it signs simulated calls, it guards nothing.
SIM_DEFAULT_SECRET = "sim-secret"
DEFAULT_OUTCOMES = {"completed": 0.6, "no-answer": 0.2, "busy": 0.15, "failed": 0.05}


def parse_outcomes(text: str) -> dict[str, float]:
    """'completed=0.6,busy=0.4' -> weights; every outcome must be one the provider can report."""
    weights: dict[str, float] = {}
    for part in text.split(","):
        name, _, value = part.partition("=")
        name = name.strip()
        if name not in DEFAULT_OUTCOMES:
            raise ValueError(f"unknown outcome {name!r} (use {', '.join(DEFAULT_OUTCOMES)})")
        weights[name] = float(value)
    if not weights or sum(weights.values()) <= 0:
        raise ValueError("outcome weights must add up to more than 0")
    return weights


def parse_range(text: str) -> tuple[float, float]:
    """'2s..20s' -> (2.0, 20.0) seconds; a single duration is a fixed value."""
    low, _, high = text.partition("..")
    low_s = parse_duration(low).total_seconds()
    high_s = parse_duration(high).total_seconds() if high else low_s
    if high_s < low_s:
        raise ValueError(f"range {text!r} runs backwards")
    return low_s, high_s


@dataclass
class SimSettings:
    secret: str = SIM_DEFAULT_SECRET
    rate: Rate | None = field(default_factory=lambda: parse_rate("200/min"))  # None: unlimited
    channels: int = 16  # 0: unlimited
    seed: int = 1
    outcomes: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_OUTCOMES))
    ring: tuple[float, float] = (2.0, 20.0)
    talk: tuple[float, float] = (10.0, 120.0)
    duplicates: float = 0.0
    reorder: float = 0.0
    callbacks: bool = True
    lose_final: float = 0.0  # share of calls whose final callback is never sent
