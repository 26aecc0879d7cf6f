"""Sans-I/O raft core for the manager store, in the style of etcd-io/raft.

The shell owns the clock, disk and sockets and drives one `RaftCore`:

    core = RaftCore(id, log, random.Random(), RaftConfig(), peers=[1, 2, 3])
    every tick (100 ms with the default config):  core.tick()
    every message from a peer:                    core.step(msg)
    local requests:  core.propose(data) -> index, core.propose_conf_change(cc),
                     core.read_index(ctx), core.transfer_leadership(to)
    then, while core.has_ready():
        rd = core.ready()
        persist rd.snapshot, rd.entries, rd.hard_state (fsync if rd.must_sync);
            rd.messages may go out before or during the write
        send rd.messages_after_persist
        restore rd.snapshot / apply rd.committed_entries; answer rd.read_states
            once applied >= their index
        core.advance(rd)

`log` is read-only to the core (`Log`); the shell writes it (`LogWriter`:
`MemoryLog` here, SQLite in the daemon) and snapshots/compacts it with
`create_snapshot(applied, core.conf_state, data)` and `compact(i)`.
`force_new_cluster(log, id)` rewrites a stopped survivor's log into a
one-voter cluster.
"""

from .config import RaftConfig
from .core import RaftCore
from .errors import (
    Compacted,
    ConfChangePending,
    InvalidMessage,
    NotLeader,
    ProposalDropped,
    RaftError,
    SnapshotOutOfDate,
    Unavailable,
)
from .log import Log, LogWriter, MemoryLog
from .messages import (
    ConfChange,
    ConfChangeKind,
    ConfState,
    Entry,
    EntryKind,
    HardState,
    Message,
    Snapshot,
    SnapshotMeta,
)
from .ready import ReadState, Ready, Role, SoftState
from .recovery import force_new_cluster

__all__ = [
    "Compacted",
    "ConfChange",
    "ConfChangeKind",
    "ConfChangePending",
    "ConfState",
    "Entry",
    "EntryKind",
    "HardState",
    "InvalidMessage",
    "Log",
    "LogWriter",
    "MemoryLog",
    "Message",
    "NotLeader",
    "ProposalDropped",
    "RaftConfig",
    "RaftCore",
    "RaftError",
    "ReadState",
    "Ready",
    "Role",
    "Snapshot",
    "SnapshotMeta",
    "SnapshotOutOfDate",
    "SoftState",
    "Unavailable",
    "force_new_cluster",
]
