"""The ledger (DELIVERY §2, §4): a queue in position order, outcomes that keep the original line,
one writer per ledger by an OS lock, lock-free readers, and files of others never altered."""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pipeline.delivery.ledger import (
    BATCH,
    FINISHED,
    UNFINISHED,
    Ledger,
    LedgerBusy,
    LedgerError,
    Row,
    Status,
)

APP = "acme"
ROOT = Path(__file__).resolve().parent.parent

# A writer in another process: opens the ledger, enqueues N rows (committed or not), says
# "ready", then sleeps until killed (or closes first with CLOSE=1).
HOLDER = """
import sys, time
from pathlib import Path
from pipeline.delivery.ledger import Ledger
path, rows = Path(sys.argv[1]), int(sys.argv[2])
commit, close = sys.argv[3] == "1", sys.argv[4] == "1"
ledger = Ledger.open_writer(path, "acme")
for n in range(rows):
    ledger.enqueue(f"k{n}", f"h{n}", b"line %d" % n)
if commit:
    ledger.flush()
if close:
    ledger.close()
print("ready", flush=True)
time.sleep(120)
"""


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def folder(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir())


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "ledger.sqlite"


@pytest.fixture
def holder(path: Path) -> Iterator[list[subprocess.Popen[str]]]:
    """Processes started by `start_holder`, killed at the end of the test."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


def start_holder(
    started: list[subprocess.Popen[str]],
    path: Path,
    rows: int = 0,
    *,
    commit: bool = True,
    close: bool = False,
) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path), str(rows), str(int(commit)), str(int(close))],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    started.append(process)
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "ready"
    return process


def kill(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)


def keys(rows: Iterator[Row]) -> list[str]:
    return [row.key for row in rows]


# -- the queue ---------------------------------------------------------------------------------


def test_enqueue_gives_positions_and_unfinished_follows_them(path: Path) -> None:
    with Ledger.open_writer(path, APP) as ledger:
        assert ledger.app == APP
        assert [ledger.enqueue(k, f"h-{k}", k.encode()) for k in ("a", "b", "c")] == [1, 2, 3]
        rows = list(ledger.unfinished())
        assert [(r.key, r.position, r.status) for r in rows] == [
            ("a", 1, "pending"),
            ("b", 2, "pending"),
            ("c", 3, "pending"),
        ]
        assert rows[0] == Row("a", 1, "pending", "h-a", b"a", 0, (), None, ())
        ledger.record("b", "failed", 3, ["POST /users/ -> 503"], "503 three times", [])
        ledger.record("c", "held", 0, [], "held behind b", [])
        ledger.record("a", "delivered", 1, ["POST /users/ -> 200"], None, ["city truncated"])
        assert keys(ledger.unfinished()) == ["b", "c"]
        assert ledger.counts() == {
            "pending": 0,
            "delivered": 1,
            "rejected": 0,
            "failed": 1,
            "held": 1,
        }


def test_enqueue_again_moves_the_event_to_the_back_as_new(path: Path) -> None:
    with Ledger.open_writer(path, APP) as ledger:
        for k in ("a", "b", "c"):
            ledger.enqueue(k, "h1", k.encode())
        ledger.record("a", "failed", 4, ["r"], "timeout", ["w"])
        assert ledger.enqueue("a", "h2", b"a, edited") == 4
        assert keys(ledger.unfinished()) == ["b", "c", "a"]
        assert ledger.get("a") == Row("a", 4, "pending", "h2", b"a, edited", 0, (), None, ())
        ledger.record("b", "delivered", 1, [], None, [])
        assert ledger.enqueue("b", "h3", b"b, edited") == 5
        assert [(r.key, r.position) for r in ledger.unfinished()] == [("c", 3), ("a", 4), ("b", 5)]
        assert ledger.get("missing") is None


def test_record_keeps_the_line_and_position_for_every_status(path: Path) -> None:
    statuses: tuple[Status, ...] = ("delivered", "rejected", "failed", "held", "pending")
    with Ledger.open_writer(path, APP) as ledger:
        for n, status in enumerate(statuses):
            ledger.enqueue(status, "h", b'{"n": %d}' % n)
            ledger.record(status, status, n, [f"req {n}"], f"err {n}", [f"warn {n}"])
        for n, status in enumerate(statuses):
            assert ledger.get(status) == Row(
                status, n + 1, status, "h", b'{"n": %d}' % n, n, (f"req {n}",), f"err {n}",
                (f"warn {n}",),
            )  # fmt: skip


def test_record_refuses_an_unknown_key_or_status(path: Path) -> None:
    with Ledger.open_writer(path, APP) as ledger:
        with pytest.raises(KeyError):
            ledger.record("nope", "delivered", 1, [], None, [])
        ledger.enqueue("a", "h", b"a")
        with pytest.raises(ValueError, match="unknown status"):
            ledger.record("a", "done", 1, [], None, [])  # type: ignore[arg-type]


def test_lines_are_the_original_bytes_in_position_order(path: Path) -> None:
    lines = {
        "utf8": '{"name": "Zoë", "city": "Kraków"}'.encode(),
        "latin1": b'{"name": "Zo\xeb"}',
        "binary": b"\xff\xfe\x00garbage\x80",
        "bom": b'\xef\xbb\xbf{"type": "track"}',
        "spaces": b'  {"a" :  1 }  ',
        "empty": b"",
    }
    outcomes = {
        "utf8": "delivered",
        "latin1": "rejected",
        "binary": "rejected",
        "bom": "failed",
        "spaces": "held",
        "empty": "pending",
    }
    with Ledger.open_writer(path, APP) as ledger:
        for key, line in lines.items():
            ledger.enqueue(key, "h", line)
        for key, status in outcomes.items():
            if status != "pending":
                ledger.record(key, status, 1, [], None, [])  # type: ignore[arg-type]
        order = list(lines)
        assert list(ledger.lines(["rejected"])) == [lines["latin1"], lines["binary"]]
        assert list(ledger.lines(UNFINISHED)) == [lines["bom"], lines["spaces"], lines["empty"]]
        assert list(ledger.lines(("rejected", *UNFINISHED))) == [lines[k] for k in order[1:]]
        assert list(ledger.lines([*FINISHED, *UNFINISHED])) == [lines[k] for k in order]
        assert list(ledger.lines([])) == []
        with pytest.raises(ValueError, match="unknown status"):
            list(ledger.lines(["done"]))  # type: ignore[list-item]
    with Ledger.open_reader(path) as reader:
        assert list(reader.lines(["rejected"])) == [lines["latin1"], lines["binary"]]


def test_position_order_holds_across_pages_and_statuses(path: Path) -> None:
    """Thousands of rows spread over three statuses come back merged in position order."""
    cycle = ("pending", "failed", "held", "delivered")
    with Ledger.open_writer(path, APP) as ledger:
        for n in range(2_400):
            ledger.enqueue(f"k{n}", "h", b"%d" % n)
        for n in range(2_400):
            if cycle[n % 4] != "pending":
                ledger.record(f"k{n}", cycle[n % 4], 1, [], None, [])  # type: ignore[arg-type]
        expected = [n for n in range(2_400) if n % 4 != 3]
        assert [r.position for r in ledger.unfinished()] == [n + 1 for n in expected]
        assert list(ledger.lines(UNFINISHED)) == [b"%d" % n for n in expected]


def test_writing_while_iterating_unfinished_yields_each_row_once(path: Path) -> None:
    """The engine files outcomes (and may re-enqueue) while it walks the queue."""
    with Ledger.open_writer(path, APP) as ledger:
        for n in range(1_500):
            ledger.enqueue(f"k{n}", "h", b"x")
        seen: list[str] = []
        for row in ledger.unfinished():
            seen.append(row.key)
            # Its outcome: failed, so a later page of "failed" could meet it again.
            ledger.record(row.key, "failed", 1, [], "503", [])
            if row.key == "k10":
                ledger.enqueue("k1200", "h2", b"edited")  # moves behind the end: not yielded
            if row.key == "k11":
                ledger.enqueue("new", "h", b"new")  # enqueued after the call: not yielded
        assert seen == [f"k{n}" for n in range(1_500) if n != 1200]
        moved = Row("k1200", 1_501, "pending", "h2", b"edited", 0, (), None, ())
        assert ledger.get("k1200") == moved


def test_a_row_changed_before_its_turn_is_yielded_once(path: Path) -> None:
    """Rows are read in pages, one index range per status; a row filed as failed while it
    waits in the pending page must not come up again from the failed range."""
    with Ledger.open_writer(path, APP) as ledger:
        for n in range(1_500):
            ledger.enqueue(f"k{n}", "h", b"x")
        for n in range(0, 1_500, 2):
            ledger.record(f"k{n}", "failed", 1, [], None, [])
        seen: list[str] = []
        for row in ledger.unfinished():
            if not seen:
                ledger.record("k999", "failed", 1, [], None, [])
            seen.append(row.key)
        assert seen == [f"k{n}" for n in range(1_500)]


# -- requeue -----------------------------------------------------------------------------------


def filled(ledger: Ledger) -> None:
    for key, status in [
        ("d", "delivered"),
        ("r", "rejected"),
        ("f", "failed"),
        ("h", "held"),
        ("p", "pending"),
        ("f2", "failed"),
    ]:
        ledger.enqueue(key, "hash", key.encode())
        ledger.record(key, status, 2, ["req"], "err", [])  # type: ignore[arg-type]


def test_requeue_all_makes_failed_and_held_pending_in_place(path: Path) -> None:
    with Ledger.open_writer(path, APP) as ledger:
        filled(ledger)
        assert ledger.requeue(None, rejected=False) == 3
        assert [(r.key, r.position) for r in ledger.unfinished()] == [
            ("f", 3),
            ("h", 4),
            ("p", 5),
            ("f2", 6),
        ]
        assert {r.status for r in ledger.unfinished()} == {"pending"}
        f = ledger.get("f")
        assert f is not None
        assert (f.attempts, f.requests, f.error, f.line) == (2, ("req",), "err", b"f")
        assert ledger.requeue(None, rejected=False) == 0
        assert ledger.counts()["rejected"] == 1


def test_requeue_all_with_rejected(path: Path) -> None:
    with Ledger.open_writer(path, APP) as ledger:
        filled(ledger)
        assert ledger.requeue(None, rejected=True) == 4
        assert keys(ledger.unfinished()) == ["r", "f", "h", "p", "f2"]
        assert ledger.counts()["delivered"] == 1


def test_requeue_named_keys_only(path: Path) -> None:
    with Ledger.open_writer(path, APP) as ledger:
        filled(ledger)
        # Pending and unknown keys change nothing; a key named twice counts once.
        assert ledger.requeue(["r", "f2", "p", "nope", "r"], rejected=False) == 2
        assert keys(ledger.unfinished()) == ["r", "f", "h", "p", "f2"]
        assert ledger.requeue(["d"], rejected=False) == 1
        assert ledger.counts() == {
            "pending": 4,
            "delivered": 0,
            "rejected": 0,
            "failed": 1,
            "held": 1,
        }
        assert ledger.requeue([], rejected=True) == 0
        many = [f"x{n}" for n in range(1_200)]
        for key in many:
            ledger.enqueue(key, "h", b"x")
            ledger.record(key, "failed", 1, [], None, [])
        assert ledger.requeue(many, rejected=False) == 1_200


# -- batching and durability ---------------------------------------------------------------------


def test_batched_enqueues_are_visible_after_flush_and_survive_reopen(path: Path) -> None:
    total = 5_000 + BATCH // 2  # ends in the middle of a batch
    with Ledger.open_writer(path, APP) as ledger:
        for n in range(total):
            assert ledger.enqueue(f"k{n}", f"h{n}", b'{"n": %d}' % n) == n + 1
        with Ledger.open_reader(path) as reader:
            assert reader.counts()["pending"] == total - BATCH // 2  # committed batches only
            ledger.flush()
            assert reader.counts()["pending"] == total
    with Ledger.open_writer(path, APP) as ledger:
        rows = list(ledger.unfinished())
        assert [r.position for r in rows] == list(range(1, total + 1))
        assert [r.line for r in rows] == [b'{"n": %d}' % n for n in range(total)]
        assert ledger.enqueue("next", "h", b"x") == total + 1


def test_record_commits_at_once_with_the_enqueues_before_it(path: Path) -> None:
    with Ledger.open_writer(path, APP) as writer, Ledger.open_reader(path) as reader:
        writer.enqueue("a", "h", b"a")
        writer.enqueue("b", "h", b"b")
        assert reader.get("a") is None  # still batched
        writer.record("a", "delivered", 1, ["POST /users/ -> 200"], None, [])
        a = reader.get("a")
        assert a is not None
        assert (a.status, a.requests) == ("delivered", ("POST /users/ -> 200",))
        assert keys(reader.unfinished()) == ["b"]


def test_close_commits_the_batch(path: Path) -> None:
    ledger = Ledger.open_writer(path, APP)
    ledger.enqueue("a", "h", b"a")
    ledger.close()
    ledger.close()  # idempotent
    with Ledger.open_reader(path) as reader:
        assert keys(reader.unfinished()) == ["a"]


def test_a_writer_killed_mid_batch_leaves_a_consistent_ledger(
    path: Path, holder: list[subprocess.Popen[str]]
) -> None:
    process = start_holder(holder, path, rows=BATCH + 300, commit=False)
    kill(process)
    with Ledger.open_writer(path, APP) as ledger:
        rows = list(ledger.unfinished())
        assert [r.position for r in rows] == list(range(1, BATCH + 1))  # a committed prefix
        assert ledger.enqueue("after", "h", b"x") == BATCH + 1


# -- one writer, many readers ------------------------------------------------------------------


def test_a_second_writer_in_the_same_process_is_refused(path: Path) -> None:
    with Ledger.open_writer(path, APP):
        with pytest.raises(LedgerBusy) as caught:
            Ledger.open_writer(path, APP)
        assert caught.value.pid == os.getpid()
        assert str(caught.value) == (
            f"ledger in use by pid {os.getpid()}: wait for it to finish or use another --ledger"
        )
        assert isinstance(caught.value, LedgerError)
    with Ledger.open_writer(path, APP) as again:  # released by close
        assert again.app == APP


def test_a_writer_in_another_process_holds_the_lock_until_killed(
    path: Path, holder: list[subprocess.Popen[str]]
) -> None:
    process = start_holder(holder, path, rows=3)
    with pytest.raises(LedgerBusy, match=f"ledger in use by pid {process.pid}:") as caught:
        Ledger.open_writer(path, APP)
    assert caught.value.pid == process.pid
    kill(process)  # the kernel releases the lock; the stale pid in the lock file is harmless
    with Ledger.open_writer(path, APP) as ledger:
        assert keys(ledger.unfinished()) == ["k0", "k1", "k2"]


def test_a_writer_that_closed_releases_the_lock(
    path: Path, holder: list[subprocess.Popen[str]]
) -> None:
    start_holder(holder, path, rows=2, close=True)  # still running, ledger closed
    with Ledger.open_writer(path, APP) as ledger:
        assert keys(ledger.unfinished()) == ["k0", "k1"]


def test_a_reader_works_while_another_process_writes(
    path: Path, holder: list[subprocess.Popen[str]]
) -> None:
    start_holder(holder, path, rows=5)
    with Ledger.open_reader(path) as reader:
        assert reader.app == APP
        assert keys(reader.unfinished()) == [f"k{n}" for n in range(5)]
        assert list(reader.lines(["pending"]))[-1] == b"line 4"
        row = reader.get("k3")
        assert row is not None
        assert row.content_hash == "h3"


def test_a_reader_cannot_write(path: Path) -> None:
    with Ledger.open_writer(path, APP) as ledger:
        ledger.enqueue("a", "h", b"a")
    before = sha256(path)
    with Ledger.open_reader(path) as reader:
        for write in (
            lambda: reader.enqueue("b", "h", b"b"),
            lambda: reader.record("a", "delivered", 1, [], None, []),
            lambda: reader.requeue(None, rejected=True),
            reader.flush,
        ):
            with pytest.raises(LedgerError, match="read-only"):
                write()
    assert sha256(path) == before


def test_readers_and_writer_after_a_reader_left_its_sidecars(path: Path) -> None:
    with Ledger.open_writer(path, APP) as ledger:
        ledger.enqueue("a", "h", b"a")
    for _ in range(2):
        with Ledger.open_reader(path) as reader:
            assert keys(reader.unfinished()) == ["a"]
    with Ledger.open_writer(path, APP) as ledger:
        assert ledger.enqueue("b", "h", b"b") == 2


# -- files that are not ours -------------------------------------------------------------------


def openers(path: Path) -> list[Callable[[], Ledger]]:
    return [lambda: Ledger.open_writer(path, APP), lambda: Ledger.open_reader(path)]


def foreign_sqlite(path: Path, *, wal: bool) -> None:
    with sqlite3.connect(path) as db:
        if wal:
            db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT)")
        db.execute("INSERT INTO meta VALUES ('kind', 'photos')")
        db.execute("CREATE TABLE photos (id INTEGER PRIMARY KEY, data BLOB)")
        db.execute("INSERT INTO photos (data) VALUES (x'00ff')")
    db.close()


@pytest.mark.parametrize("wal", [False, True])
def test_a_foreign_sqlite_file_is_refused_and_untouched(tmp_path: Path, wal: bool) -> None:
    path = tmp_path / "photos.db"
    foreign_sqlite(path, wal=wal)
    before, names = sha256(path), folder(tmp_path)
    for open_it in openers(path):
        with pytest.raises(LedgerError, match="is not a usercom ledger") as caught:
            open_it()
        assert not isinstance(caught.value, LedgerBusy)
        assert sha256(path) == before
        assert folder(tmp_path) == names  # no lock file, no -wal or -shm


def test_an_sqlite_file_with_no_table_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "blank.db"
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version = 7")
    db.close()
    before = sha256(path)
    with pytest.raises(LedgerError, match="not a usercom ledger"):
        Ledger.open_writer(path, APP)
    assert sha256(path) == before


@pytest.mark.parametrize(
    "content",
    [b'{"type": "track"}\n', b"SQLite format 2\x00 but not really", b"\x00" * 4096],
)
def test_a_file_that_is_not_sqlite_is_refused_and_untouched(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(content)
    for open_it in openers(path):
        with pytest.raises(LedgerError, match="not an SQLite file"):
            open_it()
        assert path.read_bytes() == content
        assert folder(tmp_path) == ["events.jsonl"]


def test_the_old_ledger_format_is_refused_with_a_clear_reason(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE events (key TEXT PRIMARY KEY, status TEXT NOT NULL, "
            "attempts INTEGER NOT NULL, requests TEXT NOT NULL, error TEXT, line TEXT)"
        )
        db.execute("INSERT INTO events VALUES ('k', 'failed', 3, '[]', 'x', '{}')")
    db.close()
    before = sha256(path)
    for open_it in openers(path):
        with pytest.raises(LedgerError, match="older usercom"):
            open_it()
    assert sha256(path) == before


def test_another_apps_ledger_is_refused(path: Path) -> None:
    with Ledger.open_writer(path, "other") as ledger:
        ledger.enqueue("a", "h", b"a")
    before = sha256(path)
    with pytest.raises(LedgerError) as caught:
        Ledger.open_writer(path, APP)
    assert str(caught.value) == (
        f"ledger {path} belongs to app other, not {APP}: use another --ledger"
    )
    assert sha256(path) == before
    with Ledger.open_reader(path) as reader:  # readers read any app's ledger
        assert reader.app == "other"


def test_an_empty_file_is_a_new_ledger_for_a_writer_only(path: Path) -> None:
    path.write_bytes(b"")
    with pytest.raises(LedgerError, match="empty"):
        Ledger.open_reader(path)
    assert path.read_bytes() == b""
    with Ledger.open_writer(path, APP) as ledger:
        assert ledger.enqueue("a", "h", b"a") == 1


def test_a_missing_ledger_is_not_created_by_a_reader(tmp_path: Path) -> None:
    path = tmp_path / "nothing.sqlite"
    with pytest.raises(LedgerError, match="no ledger at"):
        Ledger.open_reader(path)
    assert folder(tmp_path) == []


def test_a_missing_folder_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "absent" / "ledger.sqlite"
    with pytest.raises(LedgerError, match=r"folder .* does not exist"):
        Ledger.open_writer(path, APP)
    with pytest.raises(LedgerError):
        Ledger.open_reader(path)
    assert folder(tmp_path) == []


def test_a_folder_is_not_a_ledger(tmp_path: Path) -> None:
    with pytest.raises(LedgerError, match="is a folder"):
        Ledger.open_writer(tmp_path, APP)
    with pytest.raises(LedgerError, match="is a folder"):
        Ledger.open_reader(tmp_path)
