"""`dialer campaign load`: one transaction that creates the campaign and stages its contacts.

Records are parsed here, validated in worker processes (phone parsing is the expensive part),
streamed into a temporary table with COPY, then moved into `contacts` by one INSERT that skips
numbers already present. A crash or Ctrl-C anywhere rolls back everything, and the rejects file
only appears beside the CSV once the transaction has committed.
"""

from __future__ import annotations

import asyncio
import csv
import json
import multiprocessing
import os
import tempfile
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from contextlib import ExitStack
from itertools import islice
from pathlib import Path
from typing import IO

import asyncpg

from dialer.campaign_spec import CampaignFile, CampaignSpec
from dialer.errors import InputError, StateError
from dialer.loading.csv_source import CsvSource, UndecodableError
from dialer.loading.rows import ChunkResult, ColumnPlan, prepare_chunk
from dialer.loading.summary import LoadSummary

CHUNK_ROWS = 10_000
PARALLEL_FROM_BYTES = 2 << 20  # below this, worker start-up costs more than it saves

Progress = Callable[[int, int], None]  # (bytes done, bytes total)


async def load_campaign(
    conn: asyncpg.Connection,
    campaign: CampaignFile,
    csv_override: str | None = None,
    progress: Progress | None = None,
) -> LoadSummary:
    """Create or update the campaign and load its contacts; all or nothing."""
    spec = campaign.spec
    csv_path = campaign.contacts_path(csv_override)
    if csv_path is None:
        raise InputError(f"{campaign.path}: no contacts file: set 'contacts' or pass --csv")
    encodings = ["utf-8"] + ([spec.encoding] if spec.encoding else [])
    started = time.monotonic()
    with ExitStack() as files:
        rejects_user = files.enter_context(_temp_beside(csv_path))
        rejects_copy = files.enter_context(tempfile.TemporaryFile("w+", encoding="utf-8"))
        async with conn.transaction():
            campaign_id, action = await upsert_campaign(conn, spec)
            await conn.execute(_STAGE_TABLES)
            for index, encoding in enumerate(encodings):
                source = CsvSource.open(csv_path, encoding)
                try:
                    async with conn.transaction():  # a savepoint, so a retry starts clean
                        summary = await _stage(
                            conn, source, spec, rejects_user, rejects_copy, progress
                        )
                    break
                except UndecodableError:
                    if index == len(encodings) - 1:
                        raise
                    await conn.execute("TRUNCATE load_stage, load_reject_stage")
                    for handle in (rejects_user, rejects_copy):
                        handle.seek(0)
                        handle.truncate()
            summary.campaign, summary.campaign_action = spec.name, action
            await _finish(conn, campaign_id, source, summary, rejects_copy)
        summary.seconds = round(time.monotonic() - started, 2)
        summary.rejects_file = _publish_rejects(rejects_user, csv_path, summary.rejected)
    return summary


_STAGE_TABLES = """
CREATE TEMP TABLE load_stage (
    row_no integer, phone_e164 text, name text, timezone text, priority integer, fields jsonb
) ON COMMIT DROP;
CREATE TEMP TABLE load_reject_stage (row_no integer, raw jsonb, reason text) ON COMMIT DROP;
"""


async def upsert_campaign(conn: asyncpg.Connection, spec: CampaignSpec) -> tuple[int, str]:
    """Insert the campaign, or update its spec if it has never dialed; say which."""
    document = spec.to_json()
    row = await conn.fetchrow(
        "SELECT id, spec, status FROM campaigns WHERE name = $1 FOR UPDATE", spec.name
    )
    if row is None:
        campaign_id = await conn.fetchval(
            "INSERT INTO campaigns (name, account, spec) VALUES ($1, $2, $3) RETURNING id",
            spec.name,
            spec.account,
            document,
        )
        return campaign_id, "created"
    if row["status"] == "canceled":
        raise StateError(f"campaign {spec.name} is canceled; load contacts into a new campaign")
    if row["spec"] == document:
        return row["id"], "unchanged"
    dialed = await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM attempts WHERE campaign_id = $1)", row["id"]
    )
    if dialed:
        changed = sorted(
            k for k in document.keys() | row["spec"].keys() if document.get(k) != row["spec"].get(k)
        )
        raise StateError(
            f"campaign {spec.name} has already dialed, so its file can no longer change"
            f" (changed: {', '.join(changed)}); restore the file or start a new campaign"
        )
    await conn.execute(
        "UPDATE campaigns SET spec = $2, account = $3, updated_at = now() WHERE id = $1",
        row["id"],
        document,
        spec.account,
    )
    return row["id"], "updated"


async def _stage(
    conn: asyncpg.Connection,
    source: CsvSource,
    spec: CampaignSpec,
    rejects_user: IO[str],
    rejects_copy: IO[str],
    progress: Progress | None,
) -> LoadSummary:
    """Stream every record through validation into the stage tables."""
    summary = LoadSummary(campaign=spec.name, campaign_action="", source=str(source.path))
    records = source.records()
    first = next(records, None)  # reads the header, so the column plan can be made
    plan = ColumnPlan.from_header(
        source.header, spec.phone_column, spec.default_region, str(source.path)
    )
    user_writer = csv.writer(rejects_user)
    user_writer.writerow(["row_no", "reason", *plan.header])
    copy_writer = csv.writer(rejects_copy, lineterminator="\n")
    reasons: Counter[str] = Counter()

    def take(result: ChunkResult) -> bytes:
        summary.rejected += len(result.rejects)
        reasons.update(result.reasons)
        for row_no, raw, reason in result.rejects:
            user_writer.writerow([row_no, reason, *raw.values()])
            copy_writer.writerow([row_no, json.dumps(raw, ensure_ascii=False), reason])
        if progress:
            progress(source.bytes_read, source.size)
        return result.staged_csv

    def chunks():
        if first is not None:
            yield [first, *islice(records, CHUNK_ROWS - 1)]
        while chunk := list(islice(records, CHUNK_ROWS)):
            yield chunk

    counted = _counting(chunks(), summary)
    with _executor(source.size) as pool:
        await conn.copy_to_table(
            "load_stage", source=_validated(counted, plan, pool, take), format="csv"
        )
    summary.encoding, summary.delimiter = source.encoding, source.delimiter
    summary.rejects_by_reason = dict(reasons.most_common())
    return summary


def _counting(chunks, summary: LoadSummary):
    for chunk in chunks:
        summary.rows_read += len(chunk)
        yield chunk


async def _validated(chunks, plan: ColumnPlan, pool: Executor | None, take) -> AsyncIterator[bytes]:
    """Keep a few chunks in flight in the workers, hand results on in file order."""
    loop = asyncio.get_running_loop()
    in_flight: deque[asyncio.Future[ChunkResult] | Future[ChunkResult]] = deque()
    depth = 2 * (os.cpu_count() or 1) if pool else 1
    exhausted = False
    while True:
        while not exhausted and len(in_flight) < depth:
            chunk = next(chunks, None)
            if chunk is None:
                exhausted = True
            elif pool is None:
                done: asyncio.Future[ChunkResult] = loop.create_future()
                done.set_result(prepare_chunk(plan, chunk))
                in_flight.append(done)
            else:
                in_flight.append(loop.run_in_executor(pool, prepare_chunk, plan, chunk))
        if not in_flight:
            return
        data = take(await in_flight.popleft())
        if data:
            yield data


class _executor:
    """A process pool for big files (none for small ones), shut down even on Ctrl-C."""

    def __init__(self, size: int) -> None:
        self.pool: ProcessPoolExecutor | None = None
        if size >= PARALLEL_FROM_BYTES and (os.cpu_count() or 1) > 1:
            context = multiprocessing.get_context("spawn")
            self.pool = ProcessPoolExecutor(max_workers=os.cpu_count(), mp_context=context)

    def __enter__(self) -> ProcessPoolExecutor | None:
        return self.pool

    def __exit__(self, *exc: object) -> None:
        if self.pool:
            self.pool.shutdown(wait=True, cancel_futures=True)


async def _finish(
    conn: asyncpg.Connection,
    campaign_id: int,
    source: CsvSource,
    summary: LoadSummary,
    rejects_copy: IO[str],
) -> None:
    """Move staged rows into contacts and load_rejects; record the load if it changed anything."""
    rows = await conn.fetch(_INSERT_CONTACTS, campaign_id)
    by_state = {row["state"]: row["count"] for row in rows}
    summary.loaded = by_state.get("pending", 0)
    summary.suppressed = by_state.get("suppressed", 0)
    staged = summary.rows_read - summary.rejected
    summary.duplicates = staged - summary.loaded - summary.suppressed
    rejects_copy.flush()
    rejects_copy.seek(0)
    await conn.copy_to_table("load_reject_stage", source=rejects_copy.buffer, format="csv")
    summary.new_rejects = int(
        (await conn.execute(_INSERT_REJECTS, campaign_id, source.sha256)).split()[-1]
    )
    previous = await conn.fetchval(
        "SELECT min(loaded_at) FROM loads WHERE campaign_id = $1 AND sha256 = $2",
        campaign_id,
        source.sha256,
    )
    summary.previously_loaded_at = previous.isoformat(timespec="seconds") if previous else None
    if summary.changed:
        await conn.execute(
            """INSERT INTO loads (campaign_id, source, sha256, columns, rows_read, loaded,
                                  duplicates, suppressed, rejected)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)""",
            campaign_id,
            str(source.path),
            source.sha256,
            source.header,
            summary.rows_read,
            summary.loaded,
            summary.duplicates,
            summary.suppressed,
            summary.rejected,
        )


_INSERT_CONTACTS = """
WITH firsts AS (
    SELECT DISTINCT ON (phone_e164) row_no, phone_e164, name, timezone, priority, fields
    FROM load_stage
    ORDER BY phone_e164, row_no
), inserted AS (
    INSERT INTO contacts (campaign_id, row_no, phone_e164, name, timezone, priority, fields, state)
    SELECT $1, f.row_no, f.phone_e164, NULLIF(f.name, ''), NULLIF(f.timezone, ''), f.priority,
           f.fields, CASE WHEN d.phone_e164 IS NULL THEN 'pending' ELSE 'suppressed' END
    FROM firsts f LEFT JOIN dnc d ON d.phone_e164 = f.phone_e164
    ON CONFLICT (campaign_id, phone_e164) DO NOTHING
    RETURNING state
)
SELECT state, count(*) AS count FROM inserted GROUP BY state
"""

_INSERT_REJECTS = """
INSERT INTO load_rejects (campaign_id, row_no, raw, reason, source_sha256)
SELECT $1, row_no, raw, reason, $2 FROM load_reject_stage
ON CONFLICT (campaign_id, source_sha256, row_no) DO NOTHING
"""


class _temp_beside:
    """A temporary file in the CSV's folder, renamed into place only after commit."""

    def __init__(self, csv_path: Path) -> None:
        self.directory = csv_path.parent

    def __enter__(self) -> IO[str]:
        handle = tempfile.NamedTemporaryFile(
            "w", encoding="utf-8", newline="", dir=self.directory, prefix=".rejects-", delete=False
        )
        self.handle = handle
        return handle

    def __exit__(self, *exc: object) -> None:
        self.handle.close()
        Path(self.handle.name).unlink(missing_ok=True)


def rejects_path(csv_path: Path) -> Path:
    """`contacts.csv` -> `contacts.rejects.csv`, beside the input."""
    return csv_path.with_name(f"{csv_path.stem}.rejects.csv")


def _publish_rejects(handle: IO[str], csv_path: Path, rejected: int) -> str | None:
    """Move the finished rejects file into place; remove a stale one when nothing was rejected."""
    target = rejects_path(csv_path)
    handle.flush()
    if rejected:
        os.replace(handle.name, target)
        return str(target)
    target.unlink(missing_ok=True)
    return None
