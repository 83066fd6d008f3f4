"""`dialer campaign load`: one transaction that creates the campaign and stages its contacts.

Records are parsed here, validated in worker processes (phone parsing is the expensive part),
streamed into a temporary table with COPY, then moved into `contacts` by one INSERT that skips
numbers already present. A crash or Ctrl-C anywhere rolls back everything, and the rejects file
only appears beside the CSV once the transaction has committed.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import multiprocessing
import os
import tempfile
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from contextlib import ExitStack
from itertools import islice
from pathlib import Path
from typing import IO

import asyncpg

from dialer.campaign_spec import CampaignFile, CampaignSpec
from dialer.errors import ConflictError, InputError
from dialer.loading.csv_source import CsvSource, UndecodableError
from dialer.loading.rows import ChunkResult, ColumnPlan, prepare_chunk, worker_init
from dialer.loading.seen import SeenNumbers
from dialer.loading.summary import LoadSummary
from dialer.spreadsheet import safe_cell

CHUNK_ROWS = 10_000
PARALLEL_FROM_BYTES = 2 << 20  # below this, worker start-up costs more than it saves

Progress = Callable[[int, int], None]  # (bytes done, bytes total)


async def load_campaign(
    conn: asyncpg.Connection,
    campaign: CampaignFile,
    csv_override: str | None = None,
    progress: Progress | None = None,
    *,
    raw: bool = False,
) -> LoadSummary:
    """Create or update the campaign and load its contacts; all or nothing. The rejects file
    neutralises spreadsheet formulas unless `raw`."""
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
                            conn,
                            campaign_id,
                            source,
                            spec,
                            rejects_user,
                            rejects_copy,
                            progress,
                            lambda value: value if raw else safe_cell(value),
                        )
                    break
                except UndecodableError:
                    if index == len(encodings) - 1:
                        raise
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
    campaign_id bigint, row_no integer, phone_e164 text, name text, timezone text,
    priority integer, fields jsonb
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
        raise ConflictError(f"campaign {spec.name} is canceled; load contacts into a new campaign")
    if row["spec"] == document:
        return row["id"], "unchanged"
    dialed = await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM attempts WHERE campaign_id = $1)", row["id"]
    )
    if dialed:
        changed = sorted(
            k for k in document.keys() | row["spec"].keys() if document.get(k) != row["spec"].get(k)
        )
        raise ConflictError(
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
    campaign_id: int,
    source: CsvSource,
    spec: CampaignSpec,
    rejects_user: IO[str],
    rejects_copy: IO[str],
    progress: Progress | None,
    cell: Callable[[str], str],
) -> LoadSummary:
    """Stream every record through validation and into `contacts`, chunk by chunk.

    Each validated chunk is written while the workers validate the next ones, so PostgreSQL's
    work overlaps Python's instead of following it. Rows whose number is new to this load are
    COPied straight into `contacts`; possible repeats are resolved exactly at the end.
    """
    summary = LoadSummary(campaign=spec.name, campaign_action="", source=str(source.path))
    records = source.records()
    first = next(records, None)  # reads the header, so the column plan can be made
    plan = ColumnPlan.from_header(
        source.header,
        spec.phone_column,
        spec.default_region,
        str(source.path),
        (spec.window.start, spec.window.end),
    )
    user_writer = csv.writer(rejects_user)
    user_writer.writerow(["row_no", "reason", *map(cell, plan.header)])
    copy_writer = csv.writer(rejects_copy, lineterminator="\r\n")  # \r in a value: quoted
    reasons: Counter[str] = Counter()
    seen, newest_before = await _numbers_in_campaign(conn, campaign_id)
    inserted = 0

    def chunks() -> Iterator[list[tuple[int, list[str]]]]:
        if first is not None:
            yield [first, *islice(records, CHUNK_ROWS - 1)]
        while chunk := list(islice(records, CHUNK_ROWS)):
            yield chunk

    with _executor(source.size) as pool:
        async for chunk_size, result in _validated(chunks(), plan, campaign_id, pool):
            summary.rows_read += chunk_size
            summary.rejected += len(result.rejects)
            reasons.update(result.reasons)
            for row_no, raw, reason in result.rejects:
                user_writer.writerow([row_no, cell(reason), *map(cell, raw.values())])
                copy_writer.writerow([row_no, json.dumps(raw, ensure_ascii=False), reason])
            new, maybe = [], []
            for phone, line in zip(result.phones, result.lines, strict=True):
                (maybe if seen.add(phone) else new).append(line)
            if new:
                await _copy_lines(conn, "contacts", new)
                inserted += len(new)
            if maybe:
                await _copy_lines(conn, "load_stage", maybe)
            if progress:
                progress(source.bytes_read, source.size)
    inserted += int((await conn.execute(_INSERT_REPEATS, campaign_id)).split()[-1])
    summary.suppressed = int(
        (await conn.execute(_SUPPRESS_DNC, campaign_id, newest_before)).split()[-1]
    )
    summary.loaded = inserted - summary.suppressed
    summary.duplicates = summary.rows_read - summary.rejected - inserted
    summary.encoding, summary.delimiter = source.encoding, source.delimiter
    summary.rejects_by_reason = dict(reasons.most_common())
    return summary


_COPY_COLUMNS = ["campaign_id", "row_no", "phone_e164", "name", "timezone", "priority", "fields"]


async def _copy_lines(conn: asyncpg.Connection, table: str, lines: list[str]) -> None:
    data = io.BytesIO("".join(lines).encode())
    await conn.copy_to_table(table, source=data, columns=_COPY_COLUMNS, format="csv")


async def _numbers_in_campaign(
    conn: asyncpg.Connection, campaign_id: int
) -> tuple[SeenNumbers, int]:
    """The numbers the campaign already has, and its newest contact id (0 if none).

    The campaign row is locked, so no other load adds numbers to it until this one commits.
    """
    seen = SeenNumbers()
    newest = 0
    async with conn.transaction():
        cursor = conn.cursor(
            "SELECT id, phone_e164 FROM contacts WHERE campaign_id = $1",
            campaign_id,
            prefetch=10_000,
        )
        async for row in cursor:
            seen.add(row["phone_e164"])
            newest = max(newest, row["id"])
    return seen, newest


async def _validated(
    chunks: Iterator[list[tuple[int, list[str]]]],
    plan: ColumnPlan,
    campaign_id: int,
    pool: Executor | None,
) -> AsyncIterator[tuple[int, ChunkResult]]:
    """Keep a few chunks in flight in the workers; hand results on in file order."""
    loop = asyncio.get_running_loop()
    in_flight: deque[tuple[int, asyncio.Future[ChunkResult]]] = deque()
    depth = 2 * (os.cpu_count() or 1) if pool else 1
    exhausted = False
    try:
        while True:
            while not exhausted and len(in_flight) < depth:
                chunk = next(chunks, None)
                if chunk is None:
                    exhausted = True
                elif pool is None:
                    done: asyncio.Future[ChunkResult] = loop.create_future()
                    done.set_result(prepare_chunk(plan, campaign_id, chunk))
                    in_flight.append((len(chunk), done))
                else:
                    future = loop.run_in_executor(pool, prepare_chunk, plan, campaign_id, chunk)
                    in_flight.append((len(chunk), future))
            if not in_flight:
                return
            size, pending = in_flight[0]
            result = await pending
            in_flight.popleft()
            yield size, result
    finally:
        for _, abandoned in in_flight:  # interrupted: nobody will read these, say so quietly
            abandoned.cancel()
            abandoned.add_done_callback(_consume)


def _consume(future: asyncio.Future) -> None:
    if not future.cancelled():
        future.exception()


class _executor:
    """A process pool for big files (none for small ones), shut down even on Ctrl-C."""

    def __init__(self, size: int) -> None:
        self.pool: ProcessPoolExecutor | None = None
        if size >= PARALLEL_FROM_BYTES and (os.cpu_count() or 1) > 1:
            self.pool = ProcessPoolExecutor(
                max_workers=os.cpu_count(),
                mp_context=multiprocessing.get_context("spawn"),
                initializer=worker_init,
                initargs=(os.getpid(),),
            )

    def __enter__(self) -> ProcessPoolExecutor | None:
        return self.pool

    def __exit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        if self.pool is None:
            return
        if kind is None:
            self.pool.shutdown(wait=True)
            return
        # Interrupted or failed: the work in flight is worthless, stop the workers now. The
        # queue's feeder thread may be blocked writing a chunk to workers about to die; exiting
        # must not wait for it (seen as a load that hung after Ctrl-C).
        workers = list(getattr(self.pool, "_processes", {}).values())
        call_queue = getattr(self.pool, "_call_queue", None)
        if call_queue is not None:
            call_queue.cancel_join_thread()
        self.pool.shutdown(wait=False, cancel_futures=True)
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.join(timeout=5)


async def _finish(
    conn: asyncpg.Connection,
    campaign_id: int,
    source: CsvSource,
    summary: LoadSummary,
    rejects_copy: IO[str],
) -> None:
    """Store the rejects; record the load if it changed anything."""
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


# Rows whose number may have been seen earlier in this load: the first row of each number wins,
# and only if the number is not in the campaign yet.
_INSERT_REPEATS = """
INSERT INTO contacts (campaign_id, row_no, phone_e164, name, timezone, priority, fields)
SELECT DISTINCT ON (s.phone_e164) $1::bigint, s.row_no, s.phone_e164, s.name, s.timezone,
       s.priority, s.fields
FROM load_stage s
WHERE NOT EXISTS (
    SELECT 1 FROM contacts c WHERE c.phone_e164 = s.phone_e164 AND c.campaign_id = $1
)
ORDER BY s.phone_e164, s.row_no
"""

# Numbers on the do-not-call list are loaded, but as `suppressed`: never dialed, still reported.
_SUPPRESS_DNC = """
UPDATE contacts c SET state = 'suppressed'
FROM dnc d
WHERE d.phone_e164 = c.phone_e164 AND c.campaign_id = $1 AND c.id > $2 AND c.state = 'pending'
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
            "w",
            encoding="utf-8",
            newline="",
            dir=self.directory,
            prefix=".dialer-rejects-",
            suffix=".tmp",
            delete=False,
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
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(handle.name, 0o666 & ~umask)  # a normal file for the user, not 0600
        os.replace(handle.name, target)
        return str(target)
    target.unlink(missing_ok=True)
    return None
