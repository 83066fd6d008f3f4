"""Phone validation: the fast library against phonenumbers (issue 16).

    python bench/phones.py [--numbers 1000000] [--rounds 3]

1. The differential run: `--numbers` numbers across every region (valid numbers with a digit
   changed, random digits, international forms read without a region, trunk prefixes), each
   read by `dialer.phones.read_number` and by phonenumbers alone; every disagreement is listed
   by region. A region where the fast library disagrees belongs in SLOW_REGIONS.
2. Speed, side by side: numbers of one region (IN, as a campaign's CSV) and of every region
   mixed, per number, phonenumbers alone against dialer.phones; medians of `--rounds`.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import median, write_section

from dialer.phones import FAST, SLOW_REGIONS
from tests.test_phones import ours, reference, sample_numbers


def timed(read, numbers: list[tuple[str, str | None]]) -> float:
    started = time.perf_counter()
    for raw, region in numbers:
        read(raw, region)
    return (time.perf_counter() - started) / len(numbers) * 1e6  # microseconds per number


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--numbers", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    assert FAST is not None, "rphonenumbers is not installed"
    per_region = max(1, options.numbers // 245)
    numbers = sample_numbers(per_region, seed=2026)
    started = time.perf_counter()
    disagree = Counter(
        region or "(+)" for raw, region in numbers if ours(raw, region) != reference(raw, region)
    )
    differential_s = time.perf_counter() - started
    rng = random.Random(5)
    india = [(f"9{rng.randrange(10**8, 10**9)}", "IN") for _ in range(100_000)]
    mixed = rng.sample(numbers, min(100_000, len(numbers)))
    speeds: dict[str, list[float]] = {k: [] for k in ("in_ref", "in_ours", "mix_ref", "mix_ours")}
    for _ in range(options.rounds):
        speeds["in_ref"].append(timed(reference, india))
        speeds["in_ours"].append(timed(ours, india))
        speeds["mix_ref"].append(timed(reference, mixed))
        speeds["mix_ours"].append(timed(ours, mixed))
    m = {k: median(v) for k, v in speeds.items()}
    rows = [
        ("100,000 Indian mobiles, region IN", m["in_ref"], m["in_ours"]),
        ("100,000 of every region, mixed", m["mix_ref"], m["mix_ours"]),
    ]
    table = "\n".join(
        f"| {name} | {ref:.1f} | {fast:.1f} | {ref / fast:.1f}x |" for name, ref, fast in rows
    )
    command = f"python bench/phones.py --numbers {options.numbers} --rounds {options.rounds}"
    body = f"""Command: `{command}`
(2 cores, Python {sys.version.split()[0]}).

The differential run: {len(numbers):,} numbers over every region (valid numbers with a digit
changed, random digits, international forms without a region, trunk prefixes), read by
`dialer.phones.read_number` (rphonenumbers, and phonenumbers for SLOW_REGIONS =
{sorted(SLOW_REGIONS)}) and by phonenumbers alone, in {differential_s:.0f} s:
**{sum(disagree.values())} disagreements** {dict(disagree) if disagree else ""}.

Speed, side by side, medians of {options.rounds} rounds (microseconds per number):

| numbers | phonenumbers alone | dialer.phones | ratio |
|---|---|---|---|
{table}
"""
    print(body)
    write_section("Phone validation: rphonenumbers where it agrees (issue 16)", body)
    if disagree:
        raise SystemExit(f"disagreements outside SLOW_REGIONS: {dict(disagree)}")


if __name__ == "__main__":
    main()
