"""The offline queue (edge_runtime/io/outbox.py): on disk, bounded in bytes and count, in order,
kept over a crash, one process at a time, sequence numbers never reused."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edge_runtime.io.outbox import SEQ_BLOCK, Outbox, OutboxBusy
from tests.support import until

ROOT = Path(__file__).resolve().parents[2]


def _topics(box: Outbox) -> list[str]:
    return [r.topic for r in box.take(10_000)]


def test_rows_come_back_in_order_after_a_reopen(tmp_path):
    path = tmp_path / "q.sqlite"
    box = Outbox(path, 1 << 20, 100)
    for i in range(5):
        assert box.append(f"t/{i}", b"x" * i, 1)
    box.close()
    box = Outbox(path, 1 << 20, 100)
    assert len(box) == 5 and box.bytes == sum(len(f"t/{i}") + i for i in range(5))
    rows = box.take(3)
    assert [r.topic for r in rows] == ["t/0", "t/1", "t/2"] and rows[2].payload == b"xx"
    assert [r.topic for r in box.take(3)] == ["t/3", "t/4"]  # in flight ones are not handed out twice
    assert box.take(3) == [] and box.waiting == 0 and len(box) == 5
    box.remove(rows[0].id)
    box.give_back(rows[1].id)  # the link went down before it left
    assert [r.topic for r in box.take(10)] == ["t/1", "t/2", "t/3", "t/4"]
    box.close()


def test_bounded_in_bytes_and_count_oldest_waiting_dropped_and_counted(tmp_path):
    box = Outbox(tmp_path / "q.sqlite", max_bytes=100, max_count=1000)
    for i in range(10):
        assert box.append(f"t{i}", b"y" * 18, 1)  # 20 bytes each: 5 fit
    assert len(box) == 5 and box.bytes == 100 and box.dropped == 5
    assert _topics(box) == ["t5", "t6", "t7", "t8", "t9"]
    assert not box.append("big", b"z" * 200, 1) and box.dropped == 6  # alone over the bound
    box.close()
    box = Outbox(None, max_bytes=1 << 20, max_count=3)  # in memory: the same rules
    for i in range(5):
        box.append(f"m{i}", b"", 0)
    assert _topics(box) == ["m2", "m3", "m4"] and box.dropped == 2 and box.path is None


def test_a_crash_keeps_the_queue_and_never_reuses_a_sequence_number(tmp_path):
    """A process that dies without closing (power cut): its rows are all there, in order, and the
    next process's sequence numbers start after every number the dead one could have used."""
    path = tmp_path / "q.sqlite"
    code = ("import os; from edge_runtime.io.outbox import Outbox\n"
            f"box = Outbox({str(path)!r}, 1 << 20, 100)\n"
            "for i in range(7):\n"
            "    box.append(f'cov/{box.next_seq()}', b'{}', 1)\n"
            "assert box.flush(10)\n"  # the writer thread has put them on disk
            "os._exit(0)\n")  # no close(): as a power cut
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
    box = Outbox(path, 1 << 20, 100)
    assert _topics(box) == [f"cov/{i}" for i in range(1, 8)]
    first = box.next_seq()
    assert 7 < first <= SEQ_BLOCK + 1
    box.close()
    box = Outbox(path, 1 << 20, 100)  # a clean close: the next number follows exactly
    assert box.next_seq() == first + 1
    box.close()
    assert Outbox(None, 10, 10).next_seq() == 1


def test_one_process_at_a_time(tmp_path):
    path = tmp_path / "q.sqlite"
    box = Outbox(path, 1000, 10)
    code = f"from edge_runtime.io.outbox import Outbox\nOutbox({str(path)!r}, 1000, 10)\n"
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode != 0 and "OutboxBusy: another process is using the offline queue" in r.stderr
    box.close()
    with pytest.raises(OutboxBusy):
        box2 = Outbox(path, 1000, 10)
        Outbox(path, 1000, 10)  # the same process twice: refused as well
    box2.close()


@pytest.mark.parametrize("content", [b"not a database at all" * 100, b"SQLite format 3\x00" + b"\xff" * 4000])
def test_an_unreadable_file_is_moved_aside_not_fatal(tmp_path, content, caplog):
    path = tmp_path / "q.sqlite"
    path.write_bytes(content)
    with caplog.at_level("WARNING", logger="roadseg.mqtt"):
        box = Outbox(path, 1000, 10)
    assert len(box) == 0 and box.append("t", b"1", 1)
    assert any("not readable" in r.message for r in caplog.records)
    assert len(list(tmp_path.glob("q.sqlite.corrupt-*"))) == 1
    box.close()
    assert (path.stat().st_mode & 0o077) == 0  # the owner's data only


def test_a_card_hovering_at_the_threshold_does_not_flap_the_fault(small_tmpfs, caplog):
    """Set under MIN_FREE_BYTES, cleared only at CLEAR_FREE_BYTES: free space moving around the threshold
    said "disk full" / "takes writes again" eight times in twelve seconds (and republished the status)."""
    import logging
    import os
    from edge_runtime.io.outbox import CLEAR_FREE_BYTES, MIN_FREE_BYTES
    from roadseg_lab.checks.soak import fill
    box = Outbox(small_tmpfs / "q" / "outbox.sqlite", max_bytes=1 << 20, max_count=100, check=0.05)
    try:
        assert box.flush(10)
        filler = fill(small_tmpfs)
        size = filler.stat().st_size

        def free_exactly(n):  # give back n bytes of the filler
            os.truncate(filler, size - n)
        with caplog.at_level(logging.WARNING, logger="roadseg.mqtt"):
            assert until(lambda: box.fault is not None, 10)
            free_exactly(MIN_FREE_BYTES + 64 * 1024)  # over the threshold, under the clearing mark
            for _ in range(5):  # several looks at that level: the fault stays
                box._look()
            assert box.fault is not None
            free_exactly(CLEAR_FREE_BYTES + 512 * 1024)  # room for what the queue writes meanwhile
            assert until(lambda: box.fault is None, 20), (box.fault, os.statvfs(small_tmpfs).f_bavail * 4096)
        said = [r.getMessage() for r in caplog.records]
        assert sum("cannot write" in m for m in said) == 1 and sum("takes writes again (refused since" in m for m in said) == 1, said
    finally:
        box.close()


def test_a_slow_write_is_a_fault_for_a_while_not_until_the_next_write(tmp_path, monkeypatch):
    """A connected vehicle writes once per 50 summaries: one slow commit said "slow disk" for ~50 intervals."""
    from edge_runtime.io import outbox
    box = Outbox(tmp_path / "outbox.sqlite", max_bytes=1 << 20, max_count=100)
    try:
        box._note_speed(outbox.SLOW_WRITE_S + 1)
        assert box.fault and "slow disk" in box.fault["error"]
        box._slow["ended"] -= outbox.SLOW_HOLD_S + 1  # the hold has passed without another slow write
        assert box.fault is None
        box._note_speed(outbox.SLOW_WRITE_S + 1)
        box._note_speed(0.01)  # a quick write ends it at once
        assert box.fault is None
    finally:
        box.close()


def test_the_write_ahead_log_stays_small_on_the_card(tmp_path):
    """Every commit appends to the WAL; with SQLite's default checkpoint (1000 pages) the log of a queue
    holding a few hundred bytes grew to 4 MB and stayed that size: on the soak's 4 MiB card it filled the
    card by itself within the hour. The log is checkpointed every WAL_CHECKPOINT_PAGES and truncated."""
    from edge_runtime.io.outbox import WAL_SIZE_LIMIT
    path = tmp_path / "q.sqlite"
    box = Outbox(path, 1 << 20, 100)
    wal = path.with_name(path.name + "-wal")
    largest = 0
    for i in range(600):  # 600 commits: a connected vehicle's reservations and an outage's queue over hours
        assert box.append(f"t/{i}", b"x" * 300, 1)
        assert box.flush(10)
        for row in box.take(10):
            box.remove(row.id)
        assert box.flush(10)
        largest = max(largest, wal.stat().st_size if wal.exists() else 0)
    box.close()
    assert largest <= WAL_SIZE_LIMIT + 64 * 4096, largest  # default settings: over 4 MB


def test_flush_returns_only_once_the_rows_are_committed(tmp_path):
    """flush() said True as soon as the writer had taken the rows out of its to-do sets, before their
    transaction committed: a kill -9 right after a "flushed" queue lost rows (found by an adversary)."""
    import sqlite3
    import threading
    path = tmp_path / "q.sqlite"
    box = Outbox(path, 1 << 20, 100)
    assert box.append("t", b"first", 1) and box.flush(10)
    entered, release = threading.Event(), threading.Event()

    class HeldInsert:  # the writer's connection, its INSERT held mid-transaction (a card slow to take it)
        def __init__(self, db):
            self.db = db

        def __enter__(self):
            return self.db.__enter__()

        def __exit__(self, *a):
            return self.db.__exit__(*a)

        def execute(self, *a):
            return self.db.execute(*a)

        def executemany(self, *a):
            entered.set()
            release.wait(30)
            return self.db.executemany(*a)

        def close(self):
            return self.db.close()
    box._db = HeldInsert(box._db)
    try:
        assert box.append("t", b"second", 1)
        assert entered.wait(10)
        assert not box.flush(0.2)  # the row is in a transaction, not in the file
    finally:
        release.set()
    assert box.flush(10)
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as ro:
        assert [r[0] for r in ro.execute("SELECT payload FROM outbox ORDER BY id")] == [b"first", b"second"]
    box.close()


def test_a_large_resync_leaves_no_large_log_behind(tmp_path):
    """One transaction of 1000 rows after an outage grew the WAL to 2.3 MB, and journal_size_limit only
    trims it at the next commit, which a connected vehicle makes rarely: it is truncated at once."""
    from edge_runtime.io.outbox import WAL_SIZE_LIMIT
    path = tmp_path / "q.sqlite"
    box = Outbox(path, 1 << 22, 2000)
    for i in range(1000):
        box.append(f"t/{i}", b"x" * 1500, 1)
    assert box.flush(30)
    wal = path.with_name(path.name + "-wal")
    assert (wal.stat().st_size if wal.exists() else 0) <= WAL_SIZE_LIMIT
    box.close()
    box = Outbox(path, 1 << 22, 2000)
    assert len(box) == 1000  # nothing lost by the truncation
    box.close()
