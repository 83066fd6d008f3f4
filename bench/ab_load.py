"""A/B of `dialer campaign load`: an older revision's loader and this tree's, alternately, on
the same 1,000,000-row file (bench/load.py's), so a code change shows apart from a noisy
machine.

    python bench/ab_load.py BASE_REV [--rounds 3]

Medians per side and the new/old ratio go to bench/RESULTS.md, with whether both sides
stored the same contacts and rejects (a digest of every column a load writes, in row order).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    ROOT,
    base_tree,
    bench_config,
    create_database,
    drop_database,
    median,
    migrate_as,
    postgres_cpu,
    run_measured,
    write_section,
)
from load import CAMPAIGN, OUT, generate

# Everything a load writes but ids and times, in row order
DIGEST = """
SELECT md5(string_agg(concat_ws('|', row_no, phone_e164, name, timezone, priority, fields::text,
                                state, jurisdiction), E'\\n' ORDER BY row_no))
       || '/' || (SELECT md5(string_agg(concat_ws('|', row_no, raw::text, reason), E'\\n'
                                        ORDER BY row_no)) FROM load_rejects)
FROM contacts
"""


def load_once(tree: Path) -> tuple[float, float, dict]:
    name, url = create_database()
    env = os.environ | {
        "DIALER_DATABASE_URL": url,
        "PYTHONPATH": str(tree),
        "DIALER_CONFIG": str(bench_config(OUT / "bench-dialer.toml")),
    }
    try:
        migrate_as(tree, env)
        postgres_before = postgres_cpu()
        result = run_measured(
            [sys.executable, "-m", "dialer", "campaign", "load", str(OUT / "bench.toml"), "--json"],
            env=env,
            cwd=tree,
        )
        if result.returncode != 0:
            sys.exit(f"load failed in {tree}: {result.stderr[-2000:]}")
        summary = json.loads(result.stdout)
        summary["digest"] = subprocess.run(
            ["psql", url, "-qAtc", DIGEST], check=True, capture_output=True, text=True
        ).stdout.strip()
        summary["cpu"] = (result.cpu_seconds, postgres_cpu() - postgres_before)
        return result.seconds, result.peak_rss_tree_mb, summary
    finally:
        drop_database(name)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("base")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--section", default="Contact loading A/B", help="the RESULTS.md section to write"
    )
    args = parser.parse_args()
    OUT.mkdir(exist_ok=True)
    csv_path = OUT / "contacts.csv"
    if not csv_path.exists() or csv_path.stat().st_size == 0:
        generate(csv_path, 1_000_000)
    (OUT / "bench.toml").write_text(CAMPAIGN)
    sides: dict[str, list[tuple[float, float, dict]]] = {"old": [], "new": []}
    with base_tree(args.base) as worktree:
        for round_no in range(args.rounds):
            for side, tree in (("old", worktree), ("new", ROOT)):
                sides[side].append(load_once(tree))
                seconds, rss, _ = sides[side][-1]
                spent = sides[side][-1][2]["cpu"]
                print(
                    f"round {round_no + 1} {side}: {seconds:.2f} s, {rss:.0f} MB,"
                    f" CPU {spent[0]:.2f} s dialer, {spent[1]:.2f} s PostgreSQL",
                    file=sys.stderr,
                )
    old_s = median([s for s, _, _ in sides["old"]])
    new_s = median([s for s, _, _ in sides["new"]])
    old_mb = median([m for _, m, _ in sides["old"]])
    new_mb = median([m for _, m, _ in sides["new"]])
    same = sides["old"][-1][2]["loaded"] == sides["new"][-1][2]["loaded"]
    cpu = {
        side: [median([summary["cpu"][part] for _, _, summary in runs]) for part in (0, 1)]
        for side, runs in sides.items()
    }
    digests = {summary["digest"] for side in sides.values() for _, _, summary in side}
    body = f"""`python bench/ab_load.py {args.base} --rounds {args.rounds}`: the same 1,000,000-row
file loaded by {args.base}'s loader and this tree's, alternately; medians of {args.rounds}.

| loader | seconds | peak RSS, MB (process tree) | CPU s, dialer's processes | CPU s, PostgreSQL |
|---|---|---|---|---|
| {args.base} | {old_s:.2f} | {old_mb:.0f} | {cpu["old"][0]:.2f} | {cpu["old"][1]:.2f} |
| this tree | {new_s:.2f} | {new_mb:.0f} | {cpu["new"][0]:.2f} | {cpu["new"][1]:.2f} |

Ratio new/old: {new_s / old_s:.3f} (time), {new_mb / old_mb:.3f} (memory); both loaded the
same number of contacts: {"yes" if same else "NO"}; every round of both stored the same
contacts and rejects, column by column (one digest): {"yes" if len(digests) == 1 else "NO"}.
Per round (s): old {", ".join(f"{s:.1f}" for s, _, _ in sides["old"])};
new {", ".join(f"{s:.1f}" for s, _, _ in sides["new"])}.
"""
    write_section(args.section, body)
    print(body)


if __name__ == "__main__":
    main()
