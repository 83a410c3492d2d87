"""Leases per lane (DELIVERY §7 "per-user order across instances"): an instance delivers a
user's (or a company's) events only while it holds that lane's lease.

The `lanes` table has one compact row per app and lane (`user:<id>`, `key:<key>` for an event
that names no user, `company:<id>`): who holds it (`owner`), until when (`until`, the
server's clock, so instances on machines whose clocks differ agree), and `ready` (it may have
unfinished events). Claiming reads this table only, never the events table, so a deep queue
does not slow it.

Why it cannot lose an event: ingest sets `ready` on the lane of every event it stores, in the
event's own transaction (an upsert that always writes, so it locks the row until the commit).
Only a claim or a release clears `ready`, after checking that the lane has no unfinished
event, in a REPEATABLE READ transaction: a lane row changed by an ingest that committed after
that check's snapshot makes the transaction fail (a serialization error) instead of clearing
`ready` under it, and a row an uncommitted ingest holds is skipped (SKIP LOCKED). Claims,
renewals and releases never wait on a lock, so they cannot deadlock with ingest.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from pipeline.core import paths
from pipeline.core.types import as_text

if TYPE_CHECKING:
    import psycopg

UNFINISHED_SQL: Final = "('pending', 'failed', 'held')"
COMPANY: Final = "company:"
DOUBT: Final = (
    "possibly sent twice: the instance delivering it stopped (lease expired) while a write of "
    "it may have been in flight"
)


def lanes_of(key: str, line: bytes) -> tuple[str, str | None]:
    """The event's user lane (as the delivery engine orders it: `compose.lane_of`, the SPEC's
    userId list, else email) and its company lane when it is a group event: read from the
    stored line alone, so that the lane is known at ingest, before any config is applied.
    An event the engine will never send (no type, not an object) gets a lane of its own.

    >>> lanes_of("k", b'{"type": "group", "userId": 7, "groupId": "g"}')
    ('user:7', 'company:g')
    >>> lanes_of("k", b'{"type": "track", "traits": {"email": "a@b.co"}}')
    ('user:a@b.co', None)
    >>> lanes_of("acme:k", b'[1]')
    ('key:acme:k', None)
    """
    try:
        message = json.loads(line)
    except (ValueError, RecursionError):
        return f"key:{key}", None
    kind = message.get("type") if isinstance(message, dict) else None
    if not isinstance(kind, str) or not kind:
        return f"key:{key}", None
    # The same reads as `compose.lane_of` and `company_of`, on the parsed line: `normalize`
    # only freezes the message and checks its type.
    who = paths.read(message, paths.USER_ID)
    who = who if who is not None else paths.read(message, paths.EMAIL)
    lane = f"user:{as_text(who)}" if who is not None else f"key:{key}"
    group = paths.read(message, paths.GROUP_ID) if kind.lower() == "group" else None
    return lane, None if group is None else COMPANY + as_text(group)


def mark_ready(
    db: psycopg.Connection[tuple[Any, ...]],
    app: str,
    lanes: list[str],
    holder: tuple[str, float] | None = None,
) -> None:
    """Within the storing transaction: these lanes may have unfinished events now. With
    `holder` (owner, ttl: a `send`), the lanes are also taken for it where they are free,
    expired or its own, in the same commit: no other writer can claim an event the run
    stored before the run holds its lane."""
    if not lanes:
        return
    if holder is None:
        db.execute(
            "INSERT INTO lanes (app, lane, ready) SELECT %s, unnest(%s::text[]), true "
            "ON CONFLICT (app, lane) DO UPDATE SET ready = true, "
            # A lane given back until a retry is due: a requeue means now.
            "until = CASE WHEN lanes.owner IS NULL THEN NULL ELSE lanes.until END",
            (app, sorted(set(lanes))),
        )
        return
    owner, ttl = holder
    free = "lanes.owner IS NULL OR lanes.until < now() OR lanes.owner = excluded.owner"
    db.execute(
        "INSERT INTO lanes (app, lane, ready, owner, until) SELECT %s, unnest(%s::text[]), "
        "true, %s, now() + make_interval(secs => %s) ON CONFLICT (app, lane) DO UPDATE SET "
        f"ready = true, owner = CASE WHEN {free} THEN excluded.owner ELSE lanes.owner END, "
        f"until = CASE WHEN {free} THEN excluded.until ELSE lanes.until END",
        (app, sorted(set(lanes)), owner, ttl),
    )


def claim(
    db: psycopg.Connection[tuple[Any, ...]], app: str, owner: str, ttl: float, room: int
) -> list[str]:
    """Take up to `room` free (or expired) ready lanes of `app` that have unfinished events;
    clear `ready` on those that have none. Marks the first unfinished event of a lane taken
    over from an instance whose lease expired "possibly sent twice". Returns the lanes
    taken. A serialization failure (an ingest meanwhile) takes none: the next call will."""
    if room <= 0:
        return []
    import psycopg

    try:
        with db.transaction():
            db.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            free = db.execute(
                "SELECT lane, owner FROM lanes WHERE app = %s AND ready "
                "AND (until IS NULL OR until < now()) AND owner IS DISTINCT FROM %s "
                f"AND lane NOT LIKE '{COMPANY}%%' LIMIT %s FOR UPDATE SKIP LOCKED",
                (app, owner, room),
            ).fetchall()
            if not free:
                return []
            lanes = [str(lane) for lane, _ in free]
            busy = {
                str(lane)
                for (lane,) in db.execute(
                    "SELECT DISTINCT lane FROM events WHERE app = %s AND lane = ANY(%s) "
                    f"AND status IN {UNFINISHED_SQL}",
                    (app, lanes),
                ).fetchall()
            }
            idle = [lane for lane in lanes if lane not in busy]
            taken = [lane for lane in lanes if lane in busy]
            if idle:
                db.execute(
                    "UPDATE lanes SET ready = false, owner = NULL, until = NULL "
                    "WHERE app = %s AND lane = ANY(%s)",
                    (app, idle),
                )
            if taken:
                db.execute(
                    "UPDATE lanes SET owner = %s, until = now() + make_interval(secs => %s) "
                    "WHERE app = %s AND lane = ANY(%s)",
                    (owner, ttl, app, taken),
                )
            orphans = [str(lane) for lane, was in free if was is not None and lane in busy]
            if orphans:
                _doubt_heads(db, app, orphans)
            return taken
    except psycopg.errors.SerializationFailure:
        return []


def _doubt_heads(db: psycopg.Connection[tuple[Any, ...]], app: str, lanes: list[str]) -> None:
    """The first unfinished event of each lane is the one its dead holder may have been
    sending (one at a time per lane): `explain` says so."""
    db.execute(
        "UPDATE events SET doubt = %s WHERE key IN (SELECT DISTINCT ON (lane) key FROM events "
        f"WHERE app = %s AND lane = ANY(%s) AND status IN {UNFINISHED_SQL} "
        "ORDER BY lane, position)",
        (DOUBT, app, lanes),
    )


def hold(
    db: psycopg.Connection[tuple[Any, ...]], app: str, owner: str, ttl: float, lane: str
) -> bool:
    """Take one user lane's lease if it is free, expired or ours already (never waiting on a
    lock); marks its first unfinished event when taken over from an expired holder."""
    with db.transaction():
        db.execute(
            "INSERT INTO lanes (app, lane) VALUES (%s, %s) ON CONFLICT (app, lane) DO NOTHING",
            (app, lane),
        )
        found = db.execute(
            "SELECT owner FROM lanes WHERE app = %s AND lane = %s "
            "AND (owner IS NULL OR owner = %s OR until < now()) FOR UPDATE SKIP LOCKED",
            (app, lane, owner),
        ).fetchone()
        if found is None:
            return False
        db.execute(
            "UPDATE lanes SET owner = %s, until = now() + make_interval(secs => %s) "
            "WHERE app = %s AND lane = %s",
            (owner, ttl, app, lane),
        )
        if found[0] is not None and found[0] != owner:
            _doubt_heads(db, app, [lane])
    return True


def hold_companies(
    db: psycopg.Connection[tuple[Any, ...]],
    app: str,
    owner: str,
    ttl: float,
    companies: list[str],
) -> set[str]:
    """Take the company lanes a page's group events need (those free, expired or already
    ours); returns every one of `companies` this owner holds now."""
    if not companies:
        return set()
    with db.transaction():
        db.execute(
            "INSERT INTO lanes (app, lane, ready) SELECT %s, unnest(%s::text[]), false "
            "ON CONFLICT (app, lane) DO NOTHING",
            (app, companies),
        )
        held = db.execute(
            "UPDATE lanes SET owner = %s, until = now() + make_interval(secs => %s) "
            "WHERE (app, lane) IN (SELECT app, lane FROM lanes WHERE app = %s "
            "AND lane = ANY(%s) AND (owner IS NULL OR owner = %s OR until < now()) "
            "FOR UPDATE SKIP LOCKED) RETURNING lane",
            (owner, ttl, app, companies, owner),
        ).fetchall()
    return {str(lane) for (lane,) in held}


def renew(db: psycopg.Connection[tuple[Any, ...]], app: str, owner: str, ttl: float) -> list[str]:
    """Extend every lease this owner still holds; returns those lanes (rows an ingest holds
    locked are renewed next time, well within the TTL; a lane another writer took over after
    it expired is not this owner's any more, and is not among them)."""
    changed = db.execute(
        "UPDATE lanes SET until = now() + make_interval(secs => %s) WHERE (app, lane) IN "
        "(SELECT app, lane FROM lanes WHERE app = %s AND owner = %s FOR UPDATE SKIP LOCKED) "
        "RETURNING lane",
        (ttl, app, owner),
    ).fetchall()
    return [str(lane) for (lane,) in changed]


def release_idle(db: psycopg.Connection[tuple[Any, ...]], app: str, owner: str) -> list[str]:
    """Give back the lanes this owner holds that have no unfinished event left (user lanes:
    `ready` cleared too), and company lanes no unfinished group event of its own lanes needs
    (another instance's group event of that company may be waiting for it). Returns them."""
    import psycopg

    try:
        with db.transaction():
            db.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            mine = [
                str(lane)
                for (lane,) in db.execute(
                    "SELECT lane FROM lanes WHERE app = %s AND owner = %s FOR UPDATE SKIP LOCKED",
                    (app, owner),
                ).fetchall()
            ]
            if not mine:
                return []
            users = [lane for lane in mine if not lane.startswith(COMPANY)]
            companies = [lane for lane in mine if lane.startswith(COMPANY)]
            needed = {
                str(lane)
                for (lane,) in db.execute(
                    "SELECT DISTINCT lane FROM events WHERE app = %s AND lane = ANY(%s) "
                    f"AND status IN {UNFINISHED_SQL} UNION SELECT DISTINCT e.company FROM "
                    "events e JOIN lanes l ON l.app = e.app AND l.lane = e.lane "
                    "AND l.owner = %s WHERE e.app = %s AND e.company = ANY(%s) "
                    f"AND e.status IN {UNFINISHED_SQL}",
                    (app, users, owner, app, companies),
                ).fetchall()
            }
            idle = [lane for lane in mine if lane not in needed]
            if idle:
                db.execute(
                    "UPDATE lanes SET owner = NULL, until = NULL, "
                    f"ready = ready AND lane LIKE '{COMPANY}%%' "
                    "WHERE app = %s AND lane = ANY(%s)",
                    (app, idle),
                )
            return idle
    except psycopg.errors.SerializationFailure:
        return []


# A lane's first unfinished event, as `release_waiting` asks its caller about it: received,
# last changed (seconds since the epoch), failures; and whether other unfinished events follow.
Head = tuple[float | None, float | None, int, bool]
# The caller's answer: keep the lane (None), give it back until then (seconds since the epoch),
# or give it back for good (-inf: only a given-up event is left; a requeue or a new event
# makes it ready again).
Until = float | None


def release_waiting(
    db: psycopg.Connection[tuple[Any, ...]],
    app: str,
    owner: str,
    until_due: Callable[[Head], Until],
) -> list[str]:
    """Give back the user lanes this owner holds whose first unfinished event is a failed
    one not due yet (`until_due` says until when): nobody may claim them before then, and
    they take no slot meanwhile. Returns them. As in `release_idle`, a REPEATABLE READ
    transaction: an ingest into one of them meanwhile makes this take none (a serialization
    failure), and rows an ingest holds are skipped."""
    import psycopg

    try:
        with db.transaction():
            db.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            heads = db.execute(
                "SELECT l.lane, h.received, h.updated, h.failures, EXISTS (SELECT 1 FROM events x "
                "WHERE x.app = l.app AND x.lane = l.lane AND x.position > h.position "
                f"AND x.status IN {UNFINISHED_SQL}) FROM (SELECT app, lane FROM lanes "
                "WHERE app = %s AND owner = %s AND lane NOT LIKE 'company:%%' "
                "FOR UPDATE SKIP LOCKED) l CROSS JOIN LATERAL (SELECT e.position, e.status, "
                "e.received, e.updated, e.failures FROM events e WHERE e.app = l.app "
                f"AND e.lane = l.lane AND e.status IN {UNFINISHED_SQL} ORDER BY e.position "
                "LIMIT 1) h WHERE h.status = 'failed'",
                (app, owner),
            ).fetchall()
            later: list[tuple[str, float]] = []
            done: list[str] = []
            for lane, received, updated, failures, more in heads:
                until = until_due(
                    (
                        None if received is None else float(received),
                        None if updated is None else float(updated),
                        int(failures),
                        bool(more),
                    )
                )
                if until is None:
                    continue
                if until == -math.inf:
                    done.append(str(lane))
                else:
                    later.append((str(lane), until))
            for lane, until in later:
                db.execute(
                    "UPDATE lanes SET owner = NULL, until = to_timestamp(%s) "
                    "WHERE app = %s AND lane = %s",
                    (until, app, lane),
                )
            if done:
                db.execute(
                    "UPDATE lanes SET owner = NULL, until = NULL, ready = false "
                    "WHERE app = %s AND lane = ANY(%s)",
                    (app, done),
                )
            return [lane for lane, _ in later] + done
    except psycopg.errors.SerializationFailure:
        return []


def release_all(db: psycopg.Connection[tuple[Any, ...]], app: str, owner: str) -> None:
    """At a clean stop: every lease this owner holds is free at once (its lanes stay ready),
    so the other instances need not wait for the TTL."""
    db.execute(
        "UPDATE lanes SET owner = NULL, until = NULL WHERE app = %s AND owner = %s", (app, owner)
    )


def held_count(db: psycopg.Connection[tuple[Any, ...]], app: str, owner: str) -> int:
    found = db.execute(
        f"SELECT count(*) FROM lanes WHERE app = %s AND owner = %s AND lane NOT LIKE "
        f"'{COMPANY}%%' AND until > now()",
        (app, owner),
    ).fetchone()
    return 0 if found is None else int(found[0])
