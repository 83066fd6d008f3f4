"""`dialer campaign load`: one transaction that creates the campaign and stages its contacts.

The file is decoded here and cut into segments of whole lines; worker processes read them as
CSV and validate their records (phone parsing is the expensive part) into COPY bytes, which
go straight into `contacts` unless their number may repeat one seen before (those go through
a temporary table and an INSERT, after each segment, that keeps the first of each number). A crash
or Ctrl-C anywhere rolls back everything, and the rejects file only appears beside the CSV
once the transaction has committed.
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
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from contextlib import ExitStack
from itertools import chain
from pathlib import Path
from typing import IO

from dialer.campaign_spec import CampaignFile, CampaignSpec
from dialer.db import attempts, campaigns, erasure, loads
from dialer.db.types import Connection
from dialer.erasure import ErasedNumbers
from dialer.errors import ConflictError, InputError
from dialer.loading.csv_source import CsvSource, UndecodableError, encodings_to_try
from dialer.loading.records import Segment
from dialer.loading.rows import ChunkResult, ColumnPlan, prepare_segment, worker_init
from dialer.loading.seen import SeenNumbers
from dialer.loading.summary import LISTED_REJECTS, LoadSummary
from dialer.spreadsheet import safe_cell

CHUNK_ROWS = 10_000  # lines of a segment
SEGMENT_CHARS = 4 << 20  # or characters, whichever comes first
PARALLEL_FROM_BYTES = 2 << 20  # below this, worker start-up costs more than it saves

Progress = Callable[[int, int], None]  # (bytes done, bytes total)


async def load_campaign(
    conn: Connection,
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
    encodings = encodings_to_try(csv_path, spec.encoding) if csv_path.is_file() else ["utf-8"]
    started = time.monotonic()
    with ExitStack() as files:
        rejects_user = files.enter_context(_temp_beside(csv_path))
        rejects_copy = files.enter_context(tempfile.TemporaryFile("w+", encoding="utf-8"))
        async with conn.transaction():
            await loads.end_if_paused(conn, LOAD_IDLE_LIMIT_S)
            await erasure.keep_erasures_out(conn)  # before the erased numbers are read
            campaign_id, action = await upsert_campaign(conn, spec)
            await loads.create_stage_tables(conn)
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
            if summary.loaded:
                reopened = await campaigns.reopen_finished(conn, campaign_id)
                summary.reopened, summary.completed_because = reopened
            await _finish(conn, campaign_id, source, summary, rejects_copy)
            if summary.rejected:  # the rejects file holds numbers: erasure lists it
                where = str(rejects_path(csv_path).resolve())
                await erasure.record_file(conn, "rejects", where, campaign_id)
        if summary.loaded >= ANALYZE_FROM:
            # Fresh statistics at once (autovacuum comes later): with them the claim walks the
            # due index in dialing order and stops at its batch, whatever the campaign's size.
            await loads.refresh_statistics(conn)
        summary.seconds = round(time.monotonic() - started, 2)
        summary.rejects_file = _publish_rejects(rejects_user, csv_path, summary.rejected)
    return summary


# A load that sends nothing to PostgreSQL for this long is paused (a segment takes well under
# a second; a 300 MB line under two): its session ends, and with it its locks.
LOAD_IDLE_LIMIT_S = 60.0
ANALYZE_FROM = 10_000  # a load of this many contacts or more refreshes the table's statistics


async def upsert_campaign(conn: Connection, spec: CampaignSpec) -> tuple[int, str]:
    """Insert the campaign, or update its spec if it has never dialed; say which. Two loads
    that create the same campaign at once: the second waits for the first, then loads into
    the campaign it made, as into any other."""
    document = spec.to_json()
    row = await campaigns.lock_by_name_for_load(conn, spec.name)
    if row is None:
        created = await campaigns.insert_new(conn, spec.name, spec.account, document)
        if created is not None:
            return created, "created"
        row = await campaigns.lock_by_name_for_load(conn, spec.name)  # made, committed meanwhile
        if row is None:
            raise ConflictError(
                f"campaign {spec.name} was created and removed by another session meanwhile;"
                " run the load again"
            )
    if row["status"] == "canceled":
        raise ConflictError(f"campaign {spec.name} is canceled; load contacts into a new campaign")
    stored = _as_current(row["spec"])
    if stored == document:
        return row["id"], "unchanged"
    if await attempts.any_in_campaign(conn, row["id"]):
        changed = sorted(
            k for k in document.keys() | stored.keys() if document.get(k) != stored.get(k)
        )
        raise ConflictError(
            f"campaign {spec.name} has already dialed, so its file can no longer change"
            f" (changed: {', '.join(changed)}); restore the file or start a new campaign"
        )
    await campaigns.replace_spec(conn, row["id"], spec.account, document)
    return row["id"], "updated"


def _as_current(stored: dict) -> dict:
    """A stored spec as this version writes it: keys added since it was stored (with their
    defaults) do not make an unchanged file look changed."""
    try:
        return CampaignSpec.model_validate(stored).to_json()
    except ValueError:  # not readable by this version: compare it as it is
        return stored


async def _stage(
    conn: Connection,
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
    COPied straight into `contacts`; possible repeats go through `load_stage` and are resolved
    exactly after their chunk's new rows.
    """
    summary = LoadSummary(
        campaign=spec.name,
        campaign_action="",
        source=str(source.path),
        default_region=spec.default_region,
    )
    segments = source.segments(CHUNK_ROWS, SEGMENT_CHARS)
    first = next(segments, None)  # reads the header, so the column plan can be made
    plan = ColumnPlan.from_header(
        source.header,
        spec.phone_column,
        spec.default_region,
        str(source.path),
        (spec.window.start, spec.window.end),
        spec.default_jurisdiction,
    )
    user_writer = csv.writer(rejects_user)
    user_writer.writerow(["row_no", "reason", *map(cell, plan.header)])
    copy_writer = csv.writer(rejects_copy, lineterminator="\r\n")  # \r in a value: quoted
    reasons: Counter[str] = Counter()
    seen, newest_before = await _numbers_in_campaign(conn, campaign_id)
    inserted = 0
    erased = await erasure.erased_numbers(conn)  # erased on request: loaded, but suppressed
    erased_here: list[str] = []

    read = _Reading(plan, campaign_id, source.delimiter, str(source.path), erased)
    written = _Written(conn, campaign_id)
    async with _executor(source.size, erased) as pool:
        try:
            async for result in read.validated(chain([first] if first else [], segments), pool):
                summary.rows_read += result.records
                summary.rejected += len(result.rejects)
                summary.default_region_numbers += result.default_region
                reasons.update(result.reasons)
                for row_no, raw, reason in result.rejects:
                    if len(summary.rejected_rows) < LISTED_REJECTS:
                        summary.rejected_rows.append((row_no, reason))
                    user_writer.writerow([row_no, cell(reason), *map(cell, raw.values())])
                    copy_writer.writerow([row_no, json.dumps(raw, ensure_ascii=False), reason])
                erased_here += result.erased
                repeats = [index for index, phone in enumerate(result.phones) if seen.add(phone)]
                new, maybe = result.split(repeats)
                await written.after(new, maybe)
                inserted += len(result.phones) - len(repeats)
                if progress:
                    progress(source.bytes_read, source.size)
            inserted += await written.finish()
        finally:
            await written.abandon()
    summary.suppressed = await loads.suppress_listed(conn, campaign_id, newest_before)
    if erased_here:
        summary.suppressed += await loads.suppress_numbers_loaded(
            conn, campaign_id, newest_before, erased_here
        )
    summary.loaded = inserted - summary.suppressed
    summary.duplicates = summary.rows_read - summary.rejected - inserted
    summary.encoding, summary.delimiter = source.encoding, source.delimiter
    summary.rejects_by_reason = dict(reasons.most_common())
    return summary


class _Written:
    """Segments written one at a time, in file order, each while the loop reads and routes
    the next: PostgreSQL's COPY of one overlaps this process's work on the next instead of
    waiting for it. However the loop ends, a write still in progress is ended (a COPY
    cancelled sends CopyFail) before the connection is used again."""

    def __init__(self, conn: Connection, campaign_id: int) -> None:
        self.conn, self.campaign_id = conn, campaign_id
        self._writing: asyncio.Task[int] | None = None
        self._staged_inserted = 0

    async def after(self, new: bytes, maybe: bytes) -> None:
        """Once the previous segment is written (its error raised here), start writing this
        one, and return when its rows are on their way: PostgreSQL reads them meanwhile."""
        await self.finish()
        handed_on = asyncio.Event()
        self._writing = writing = asyncio.ensure_future(self._write(new, maybe, handed_on))
        on_the_way = asyncio.ensure_future(handed_on.wait())
        try:
            await asyncio.wait([writing, on_the_way], return_when=asyncio.FIRST_COMPLETED)
        finally:
            on_the_way.cancel()

    async def _write(self, new: bytes, maybe: bytes, handed_on: asyncio.Event) -> int:
        """A segment's new numbers by COPY into `contacts`, its possible repeats through the
        stage; how many of those were inserted."""
        if new:
            await loads.copy_contacts(self.conn, new, staged=False, handed_on=handed_on)
        handed_on.set()
        if not maybe:
            return 0
        await loads.copy_contacts(self.conn, maybe, staged=True)
        return await loads.insert_staged(self.conn, self.campaign_id)

    async def finish(self) -> int:
        """Wait for the write in progress; how many staged rows all the writes inserted."""
        if self._writing is not None:
            self._staged_inserted += await self._writing
            self._writing = None
        return self._staged_inserted

    async def abandon(self) -> None:
        """End a write left in progress by an error or a cancel, its own error dropped (the
        one that ended the loop is what the caller raises)."""
        writing, self._writing = self._writing, None
        if writing is not None:
            writing.cancel()
            await asyncio.gather(writing, return_exceptions=True)


async def _numbers_in_campaign(conn: Connection, campaign_id: int) -> tuple[SeenNumbers, int]:
    """The numbers the campaign already has, and its newest contact id (0 if none).

    The campaign row is locked, so no other load adds numbers to it until this one commits.
    """
    seen = SeenNumbers()
    newest = 0
    async for row in loads.numbers_in_campaign(conn, campaign_id):
        seen.add(row["phone_e164"])
        newest = max(newest, row["id"])
    return seen, newest


class _Reading:
    """Segments through the workers, a few in flight, results handed on in file order."""

    def __init__(
        self,
        plan: ColumnPlan,
        campaign_id: int,
        delimiter: str,
        path: str,
        erased: ErasedNumbers | None = None,
    ) -> None:
        self.plan, self.campaign_id = plan, campaign_id
        self.delimiter, self.path = delimiter, path
        self.erased = erased  # for the segments read here; workers were given it at start

    def _submit(self, pool: Executor | None, segment: Segment) -> asyncio.Future[ChunkResult]:
        loop = asyncio.get_running_loop()
        plan, campaign_id = self.plan, self.campaign_id
        if pool is None:
            done: asyncio.Future[ChunkResult] = loop.create_future()
            done.set_result(
                prepare_segment(plan, campaign_id, segment, self.delimiter, self.path, self.erased)
            )
            return done
        return loop.run_in_executor(
            pool, prepare_segment, plan, campaign_id, segment, self.delimiter, self.path
        )

    async def validated(
        self, segments: Iterator[Segment], pool: Executor | None
    ) -> AsyncIterator[ChunkResult]:
        """Each segment's result. One that ended inside a quoted cell (a cut made at a stray
        quote) hands back its unfinished record, which is read again with the next segment:
        that one's result, read from the wrong start, is dropped.

        The first segment is read in this process, once the next ones are handed to the
        workers: they take a few tenths of a second to start, and PostgreSQL has its first
        rows meanwhile."""
        in_flight: deque[tuple[Segment, asyncio.Future[ChunkResult] | None]] = deque()
        depth = 2 * (os.cpu_count() or 1) if pool else 1
        exhausted = False
        first_here = pool is not None
        try:
            while True:
                while not exhausted and len(in_flight) < depth:
                    segment = next(segments, None)
                    if segment is None:
                        exhausted = True
                    elif first_here:
                        in_flight.append((segment, None))  # read below, after the others
                        first_here = False
                    else:
                        in_flight.append((segment, self._submit(pool, segment)))
                if not in_flight:
                    return
                head, reading = in_flight[0]
                result = await (reading or self._submit(None, head))
                in_flight.popleft()
                if result.open_tail is not None:
                    after: Segment | None
                    if in_flight:
                        after, stale = in_flight.popleft()
                        if stale is not None:
                            _abandon(stale)
                    else:
                        after = next(segments, None)
                        exhausted = exhausted or after is None
                    again = result.open_tail.followed_by(after)
                    in_flight.appendleft((again, self._submit(pool, again)))
                yield result
        finally:
            for _, abandoned in in_flight:  # interrupted: nobody will read these, say so quietly
                if abandoned is not None:
                    _abandon(abandoned)


def _abandon(future: asyncio.Future) -> None:
    future.cancel()
    future.add_done_callback(_consume)


def _consume(future: asyncio.Future) -> None:
    if not future.cancelled():
        future.exception()


class _executor:
    """A process pool for big files (none for small ones), its workers gone when the load ends,
    however it ends."""

    def __init__(self, size: int, erased: ErasedNumbers) -> None:
        self.pool: ProcessPoolExecutor | None = None
        if size >= PARALLEL_FROM_BYTES and (os.cpu_count() or 1) > 1:
            self.pool = ProcessPoolExecutor(
                max_workers=os.cpu_count(),
                mp_context=multiprocessing.get_context("spawn"),
                initializer=worker_init,
                initargs=(os.getpid(), erased),
            )

    async def __aenter__(self) -> ProcessPoolExecutor | None:
        return self.pool

    async def __aexit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        if self.pool is None:
            return
        # Failed or interrupted: the segments not yet handed to a worker are dropped, and the
        # few in hand (at most one more than there are workers) are finished and thrown away.
        # A worker is never killed: one killed while it writes its result can leave half a
        # message in the result pipe, and the pool's thread then waits for the rest of it for
        # ever, so the process never exits. Workers ignore Ctrl-C and leave if this process
        # dies, so the wait is bounded by the work in hand. It runs in a thread: the API loads
        # files too, and its event loop must not stop for it.
        await asyncio.to_thread(self.pool.shutdown, wait=True, cancel_futures=kind is not None)


async def _finish(
    conn: Connection,
    campaign_id: int,
    source: CsvSource,
    summary: LoadSummary,
    rejects_copy: IO[str],
) -> None:
    """Store the rejects; record the load if it changed anything."""
    rejects_copy.flush()
    rejects_copy.seek(0)
    summary.new_rejects = await loads.store_rejects(
        conn,
        campaign_id,
        source.sha256,
        rejects_copy.buffer,  # type: ignore[attr-defined]
    )
    previous = await loads.first_loaded_at(conn, campaign_id, source.sha256)
    summary.previously_loaded_at = previous.isoformat(timespec="seconds") if previous else None
    if summary.changed:
        counts = (
            summary.rows_read,
            summary.loaded,
            summary.duplicates,
            summary.suppressed,
            summary.rejected,
        )
        await loads.record_load(
            conn, campaign_id, str(source.path), source.sha256, source.header, counts
        )


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
