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


def parse_blocked(items: tuple[str, ...]) -> dict[str, float]:
    """('+15550001111=0.3', ...) -> {caller id: share of its calls carriers block}."""
    blocked: dict[str, float] = {}
    for item in items:
        caller, _, share = item.partition("=")
        try:
            value = float(share)
        except ValueError:
            raise ValueError(f"--blocked {item!r}: give CALLER_ID=SHARE, e.g. +1555…=0.3") from None
        if not caller.strip() or not 0 <= value <= 1:
            raise ValueError(f"--blocked {item!r}: give CALLER_ID=SHARE with a share in 0..1")
        blocked[caller.strip()] = value
    return blocked


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
    journal: str | None = None  # a file each accepted call is appended to (survives SIGKILL)
    declines: float = 0.0  # share of calls the person declines: busy (SIP 486) or 603, half each
    blocked: dict[str, float] = field(default_factory=dict)  # caller id -> share blocked (603)
    verstat: str = "TN-Validation-Passed-A"  # the STIR/SHAKEN status each final event carries
