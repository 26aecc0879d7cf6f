"""Local state under the state dir: SQLite, one transaction per acknowledged change.

WAL with synchronous=NORMAL: a change is in the WAL (in the kernel's page cache) before
the API answers, so a crash or kill -9 of overlayd at any moment loses nothing that was
acknowledged, and a transaction is all-or-nothing. The fsync that makes it survive a
power loss too is done by `sync()`, which the engine runs within FLUSH_DELAY of a change
(the trade PostgreSQL's asynchronous commit makes): an fsync per API call would cost more
than the rest of the call together. Local-scope state only; the raft log fsyncs first.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable, Iterable
from pathlib import Path

from daemon.records import EndpointRecord, NetworkRecord

_SCHEMA = """
CREATE TABLE IF NOT EXISTS networks (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    doc TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS endpoints (
    id TEXT PRIMARY KEY,
    network_id TEXT NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS endpoints_by_network ON endpoints(network_id);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


class Store:
    def __init__(self, state_dir: Path, on_commit: Callable[[], None] | None = None) -> None:
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = state_dir / "local.db"
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        # An endpoint may belong to a swarm network, which the cluster holds, not this
        # table: the service keeps the endpoint/network link consistent itself.
        self._db.execute("PRAGMA foreign_keys=OFF")
        self._db.executescript(_SCHEMA)

        self._on_commit = on_commit  # told after each commit, so an fsync gets scheduled

    def sync(self) -> None:
        """fsync the WAL (thread-safe: a plain fsync of the file, no SQLite call)."""
        wal = f"{self.path}-wal"
        try:
            fd = os.open(wal, os.O_RDONLY)
        except FileNotFoundError:
            return  # checkpointed into the main file, which SQLite synced
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def close(self) -> None:
        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # fsyncs: a clean stop is durable
        self._db.close()

    def networks(self) -> list[NetworkRecord]:
        rows = self._db.execute("SELECT doc FROM networks ORDER BY rowid").fetchall()
        return [NetworkRecord.from_json(json.loads(doc)) for (doc,) in rows]

    def endpoints(self) -> list[EndpointRecord]:
        rows = self._db.execute("SELECT doc FROM endpoints ORDER BY rowid").fetchall()
        return [EndpointRecord.from_json(json.loads(doc)) for (doc,) in rows]

    def get_meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def commit(
        self,
        *,
        put_networks: Iterable[NetworkRecord] = (),
        put_endpoints: Iterable[EndpointRecord] = (),
        delete_endpoints: Iterable[str] = (),
        delete_networks: Iterable[str] = (),
        put_meta: dict[str, str] | None = None,
    ) -> None:
        """Apply one change atomically: all of it is on disk, or none of it."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            for ep_id in delete_endpoints:
                db.execute("DELETE FROM endpoints WHERE id = ?", (ep_id,))
            for net in put_networks:
                db.execute(
                    "INSERT INTO networks(id, name, doc) VALUES (?, ?, ?) "
                    "ON CONFLICT(id) DO UPDATE SET name = excluded.name, doc = excluded.doc",
                    (net.id, net.name, json.dumps(net.to_json())),
                )
            for ep in put_endpoints:
                db.execute(
                    "INSERT INTO endpoints(id, network_id, doc) VALUES (?, ?, ?) "
                    "ON CONFLICT(id) DO UPDATE SET doc = excluded.doc",
                    (ep.id, ep.network_id, json.dumps(ep.to_json())),
                )
            for net_id in delete_networks:
                db.execute("DELETE FROM networks WHERE id = ?", (net_id,))
            for key, value in (put_meta or {}).items():
                db.execute(
                    "INSERT INTO meta(key, value) VALUES (?, ?) "
                    "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    (key, value),
                )
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        if self._on_commit is not None:
            self._on_commit()
