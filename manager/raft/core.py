"""RaftCore: the raft algorithm as a pure state machine (etcd-io/raft's raft.go).

Input: `tick()`, `step(msg)` and the local calls (`propose`, `read_index`,
`transfer_leadership`, `propose_conf_change`, `campaign`). Output: a `Ready`
pulled with `ready()` and acknowledged with `advance()`. The role is a
strategy: `_step`/`_tick` are swapped only by the `_become_*` methods. Time is
ticks; randomness comes from the `random.Random` passed in; the core only
reads the `Log` and never touches a disk, socket or clock.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from typing import Any

from .config import RaftConfig
from .errors import Compacted, ConfChangePending, InvalidMessage, NotLeader, ProposalDropped
from .log import Log
from .messages import (
    AFTER_PERSIST,
    LOCAL_MESSAGES,
    NONE,
    App,
    AppResp,
    Beat,
    CheckQuorum,
    ConfChange,
    ConfChangeKind,
    ConfState,
    Entry,
    EntryKind,
    HardState,
    Heartbeat,
    HeartbeatResp,
    Hup,
    InstallSnapshot,
    InstallSnapshotResp,
    Message,
    PreVote,
    PreVoteResp,
    Propose,
    ReadIndex,
    ReadIndexResp,
    TimeoutNow,
    TransferLeader,
    Vote,
    VoteResp,
)
from .progress import Progress, ProgressState, Tracker
from .raftlog import RaftLog
from .readonly import ReadOnly
from .ready import ReadState, Ready, Role, SoftState


class RaftCore:
    """One raft node. Not thread-safe; the shell serialises every call."""

    def __init__(
        self,
        id: int,
        log: Log,
        rng: random.Random,
        cfg: RaftConfig | None = None,
        peers: Iterable[int] = (),
        applied: int | None = None,
    ) -> None:
        """`peers` bootstraps a brand-new cluster (ignored once the log has state);
        a node joining an existing cluster passes none and learns the
        membership from the leader's log or snapshot. `applied` is the index
        the state machine already holds (default: the log's snapshot, which
        the shell restores before starting the core)."""
        if id == NONE:
            raise ValueError("node id must be non-zero")
        self.id = id
        self.cfg = cfg or RaftConfig()
        self._rng = rng
        self._log = RaftLog(log)
        self._trk = Tracker(self.cfg.max_inflight)
        self._read_only = ReadOnly()
        self._pending_reads: list[ReadIndex] = []
        self._msgs: list[Message] = []
        self._msgs_after: list[Message] = []
        self._self_after: list[Message] = []
        self._read_states: list[ReadState] = []
        self._outstanding: Ready | None = None
        self.term = 0
        self.vote = NONE
        self.lead = NONE
        self.role = Role.FOLLOWER
        self._election_elapsed = 0
        self._heartbeat_elapsed = 0
        self._randomized_timeout = self.cfg.election_tick
        self._lead_transferee = NONE
        self._pending_conf_index = 0
        self._step: Callable[[Message], int | None] = self._step_follower
        self._tick: Callable[[], None] = self._tick_election

        hs, cs = log.initial_state()
        self._trk.set_conf(cs, self._log.last_index() + 1)
        fresh = hs == HardState() and log.last_index() == 0 and not cs.voters
        peers = sorted(set(peers))
        snap_index = log.snapshot().meta.index
        if not fresh:
            self.term, self.vote = hs.term, hs.vote
            self._log.commit_to(max(hs.commit, snap_index, self._log.committed))
        start = snap_index if applied is None else applied
        if not self._log.first_index() - 1 <= start <= self._log.committed:
            raise ValueError(f"applied {start} outside the log's range")
        self._log.applied = self._log.applying = start
        self._prev_hs = self.hard_state
        self._prev_ss = self.soft_state
        self._become_follower(self.term, NONE)
        if start > snap_index:  # the shell applied past its snapshot: so did membership
            for e in self._log.slice(snap_index + 1, start + 1):
                if e.kind == EntryKind.CONF_CHANGE:
                    self._apply_conf_change(ConfChange.decode(e.data))
        if fresh and peers:
            self._bootstrap(peers)

    def _bootstrap(self, peers: list[int]) -> None:
        """Every founding member writes the same committed conf-change entries, so
        a member added later replays the membership from index 1 like the rest."""
        self._become_follower(1, NONE)
        ents = [
            Entry(1, i + 1, EntryKind.CONF_CHANGE, ConfChange(ConfChangeKind.ADD_VOTER, p).encode())
            for i, p in enumerate(peers)
        ]
        self._log.append(ents)
        self._log.commit_to(len(ents))

    # ------------------------------------------------------------------ status

    @property
    def hard_state(self) -> HardState:
        return HardState(self.term, self.vote, self._log.committed)

    @property
    def soft_state(self) -> SoftState:
        return SoftState(self.lead, self.role)

    @property
    def conf_state(self) -> ConfState:
        """Membership as of the applied index (what a snapshot at `applied` records)."""
        return self._trk.conf_state()

    @property
    def commit_index(self) -> int:
        return self._log.committed

    @property
    def applied_index(self) -> int:
        return self._log.applied

    @property
    def last_index(self) -> int:
        return self._log.last_index()

    @property
    def first_index(self) -> int:
        return self._log.first_index()

    @property
    def lead_transferee(self) -> int:
        return self._lead_transferee

    @property
    def randomized_election_timeout(self) -> int:
        """Ticks of silence before this node campaigns, drawn in [E, 2E)."""
        return self._randomized_timeout

    def log_term(self, index: int) -> int | None:
        return self._log.term(index)

    def log_entries(self, lo: int, hi: int) -> list[Entry]:
        """Entries [lo, hi) as this node sees them (stable and unstable)."""
        return self._log.slice(lo, hi)

    def progress(self, node_id: int) -> tuple[int, int, str] | None:
        """(match, next, state) of a follower, as the leader tracks it."""
        pr = self._trk.progress.get(node_id)
        return None if pr is None else (pr.match, pr.next, pr.state.value)

    def promotable(self) -> bool:
        return self.id in self._trk.voters

    # ------------------------------------------------------------------ input

    def tick(self) -> None:
        """One unit of time passed (the shell picks its length)."""
        self._tick()

    def step(self, m: Message) -> None:
        """Feed a message received from a peer."""
        if isinstance(m, LOCAL_MESSAGES):
            raise ValueError(f"local message {type(m).__name__} cannot come from the network")
        if m.term == 0 or m.to != self.id:
            return  # term 0: a node that never joined a term; misrouted: not ours
        _validate(m)
        self._step_any(m)

    def campaign(self) -> None:
        """Start an election now (tests, or a shell that knows better)."""
        self._step_any(Hup())

    def propose(self, data: bytes) -> int:
        """Append a command; returns its log index. Raises NotLeader/ProposalDropped."""
        return self._propose(Entry(0, 0, EntryKind.NORMAL, data))

    def propose_conf_change(self, cc: ConfChange) -> int:
        """Single-server membership change; only one may be unapplied at a time."""
        if self.role != Role.LEADER:
            raise NotLeader(self.lead)
        voters, members = self._trk.voters, self._trk.voters | self._trk.learners
        if cc.kind == ConfChangeKind.ADD_VOTER and cc.node_id in voters:
            raise ValueError(f"{cc.node_id} is already a voter")
        if cc.kind == ConfChangeKind.ADD_LEARNER and cc.node_id in members:
            raise ValueError(f"{cc.node_id} is already a member")
        if cc.kind == ConfChangeKind.REMOVE_NODE:
            if cc.node_id not in members:
                raise ValueError(f"{cc.node_id} is not a member")
            if voters == {cc.node_id}:
                raise ValueError("cannot remove the last voter")
        return self._propose(Entry(0, 0, EntryKind.CONF_CHANGE, cc.encode()))

    def read_index(self, context: bytes) -> None:
        """Ask for a linearizable read point; answered by a ReadState with `context`."""
        self._step_any(ReadIndex(frm=self.id, context=context))

    def transfer_leadership(self, to: int) -> None:
        """Hand leadership to voter `to` once it has caught up (leader only)."""
        self._step_any(TransferLeader(frm=self.id, transferee=to))

    def report_unreachable(self, node_id: int) -> None:
        """The transport could not reach `node_id`: stop pipelining to it."""
        pr = self._trk.progress.get(node_id)
        if self.role == Role.LEADER and pr is not None and pr.state == ProgressState.REPLICATE:
            pr.become_probe()

    def report_snapshot(self, node_id: int, ok: bool) -> None:
        """The transport finished (or failed) sending a snapshot to `node_id`."""
        pr = self._trk.progress.get(node_id)
        if self.role != Role.LEADER or pr is None or pr.state != ProgressState.SNAPSHOT:
            return
        if not ok:
            pr.pending_snapshot = 0
        pr.become_probe()
        pr.paused = True  # wait for a heartbeat answer before probing

    def _propose(self, entry: Entry) -> int:
        idx = self._step_any(Propose(frm=self.id, entries=(entry,)))
        assert idx is not None
        return idx

    # ------------------------------------------------------------------ output

    def has_ready(self) -> bool:
        if self._outstanding is not None:
            return False
        u = self._log.unstable
        return bool(
            self.soft_state != self._prev_ss
            or self.hard_state != self._prev_hs
            or u.snapshot is not None
            or u.entries
            or self._msgs
            or self._msgs_after
            or self._read_states
            or self._log.has_next_committed()
        )

    def ready(self) -> Ready:
        """Take the pending work. Call `advance(ready)` before the next `ready()`."""
        if self._outstanding is not None:
            raise RuntimeError("ready() called again before advance()")
        u = self._log.unstable
        hs, ss = self.hard_state, self.soft_state
        committed = tuple(self._log.next_committed(self.cfg.max_committed_bytes))
        rd = Ready(
            soft_state=ss if ss != self._prev_ss else None,
            hard_state=hs if hs != self._prev_hs else None,
            entries=tuple(u.entries),
            snapshot=u.snapshot,
            committed_entries=committed,
            messages=tuple(self._msgs),
            messages_after_persist=tuple(m for m in self._msgs_after if m.to != self.id),
            read_states=tuple(self._read_states),
            must_sync=bool(u.entries)
            or u.snapshot is not None
            or hs.term != self._prev_hs.term
            or hs.vote != self._prev_hs.vote,
        )
        self._self_after = [m for m in self._msgs_after if m.to == self.id]
        self._msgs, self._msgs_after, self._read_states = [], [], []
        self._prev_hs, self._prev_ss = hs, ss
        if committed:
            self._log.applying = committed[-1].index
        self._outstanding = rd
        return rd

    def advance(self, rd: Ready) -> None:
        """The shell persisted, sent and applied `rd`."""
        if rd is not self._outstanding:
            raise RuntimeError("advance() with a Ready that is not outstanding")
        self._outstanding = None
        log = self._log
        if rd.entries:
            last = rd.entries[-1]
            log.unstable.stable_to(last.index, last.term)
        if rd.snapshot is not None:
            log.unstable.stable_snap_to(rd.snapshot.meta.index)
            log.applied = max(log.applied, rd.snapshot.meta.index)
        for e in rd.committed_entries:
            log.applied = max(log.applied, e.index)
            if e.kind == EntryKind.CONF_CHANGE:
                self._apply_conf_change(ConfChange.decode(e.data))
        log.applying = max(log.applying, log.applied)
        # Self-addressed acks (own vote, own append) count only once durable.
        pending, self._self_after = self._self_after, []
        for m in pending:
            self._step_any(m)

    # ------------------------------------------------------------------ plumbing

    def _send(self, cls: type[Message], **kw: Any) -> None:
        kw.setdefault("term", self.term)
        m = cls(frm=self.id, **kw)
        (self._msgs_after if isinstance(m, AFTER_PERSIST) else self._msgs).append(m)

    def _reset_randomized_timeout(self) -> None:
        e = self.cfg.election_tick
        self._randomized_timeout = e + self._rng.randrange(e)

    def _reset(self, term: int) -> None:
        if term != self.term:
            self.term = term
            self.vote = NONE
        self.lead = NONE
        self._election_elapsed = 0
        self._heartbeat_elapsed = 0
        self._reset_randomized_timeout()
        self._lead_transferee = NONE
        self._trk.reset_votes()
        self._pending_conf_index = 0
        self._read_only = ReadOnly()
        self._pending_reads = []
        last = self._log.last_index()
        for nid in list(self._trk.progress):
            pr = self._trk.progress[nid] = Progress(last + 1, self.cfg.max_inflight)
            if nid == self.id:
                pr.match = self._log.stable_last_index()

    def _become_follower(self, term: int, lead: int) -> None:
        self._step = self._step_follower
        self._tick = self._tick_election
        self._reset(term)
        self.lead = lead
        self.role = Role.FOLLOWER

    def _become_pre_candidate(self) -> None:
        self._step = self._step_candidate
        self._tick = self._tick_election
        self._trk.reset_votes()
        self.lead = NONE
        self.role = Role.PRE_CANDIDATE

    def _become_candidate(self) -> None:
        self._step = self._step_candidate
        self._tick = self._tick_election
        self._reset(self.term + 1)
        self.vote = self.id
        self.role = Role.CANDIDATE

    def _become_leader(self) -> None:
        self._step = self._step_leader
        self._tick = self._tick_heartbeat
        self._reset(self.term)
        self.lead = self.id
        self.role = Role.LEADER
        own = self._trk.progress.get(self.id)
        if own is not None:
            own.state = ProgressState.REPLICATE
            own.recent_active = True
        # Any conf change in the log may be unapplied: wait until all is applied.
        self._pending_conf_index = self._log.last_index()
        self._append(Entry(0, 0, EntryKind.NOOP))

    # ------------------------------------------------------------------ ticks

    def _tick_election(self) -> None:
        self._election_elapsed += 1
        if self.promotable() and self._election_elapsed >= self._randomized_timeout:
            self._election_elapsed = 0
            self._step_any(Hup())

    def _tick_heartbeat(self) -> None:
        self._heartbeat_elapsed += 1
        self._election_elapsed += 1
        if self._election_elapsed >= self.cfg.election_tick:
            self._election_elapsed = 0
            if self.cfg.check_quorum:
                self._step_any(CheckQuorum())
            if self.role == Role.LEADER and self._lead_transferee != NONE:
                self._lead_transferee = NONE  # transfer timed out
        if self.role != Role.LEADER:
            return
        for pr in self._trk.progress.values():
            if pr.state == ProgressState.SNAPSHOT:
                pr.snapshot_elapsed += 1
                if pr.snapshot_elapsed >= self.cfg.election_tick:
                    pr.become_probe()  # snapshot presumed lost: probe again
        if self._heartbeat_elapsed >= self.cfg.heartbeat_tick:
            self._heartbeat_elapsed = 0
            self._step_any(Beat())

    # ------------------------------------------------------------------ step

    def _step_any(self, m: Message) -> int | None:
        """Rules common to every role (term handling, votes), then the role's step."""
        if m.term == 0:
            pass  # local
        elif m.term > self.term:
            if isinstance(m, (Vote, PreVote)):
                force = isinstance(m, Vote) and m.transfer
                in_lease = (
                    self.cfg.check_quorum
                    and self.lead != NONE
                    and self._election_elapsed < self.cfg.election_tick
                )
                if not force and in_lease:
                    return None  # we heard from a live leader recently: stay put
            if isinstance(m, PreVote) or (isinstance(m, PreVoteResp) and not m.reject):
                pass  # pre-votes never change our term
            elif isinstance(m, (App, Heartbeat, InstallSnapshot)):
                self._become_follower(m.term, m.frm)
            else:
                self._become_follower(m.term, NONE)
        elif m.term < self.term:
            if (self.cfg.check_quorum or self.cfg.pre_vote) and isinstance(m, (App, Heartbeat)):
                # A stale leader: tell it our term so it steps down.
                self._send(AppResp, to=m.frm)
            elif isinstance(m, PreVote):
                self._send(PreVoteResp, to=m.frm, reject=True)
            return None

        if isinstance(m, Hup):
            self._hup(m.transfer)
            return None
        if isinstance(m, (Vote, PreVote)):
            self._handle_vote(m)
            return None
        return self._step(m)

    def _handle_vote(self, m: Vote | PreVote) -> None:
        pre = isinstance(m, PreVote)
        resp = PreVoteResp if pre else VoteResp
        can_vote = (
            self.vote == m.frm
            or (self.vote == NONE and self.lead == NONE)
            or (pre and m.term > self.term)
        )
        if can_vote and self._log.is_up_to_date(m.last_index, m.last_term):
            # Answer with the message's term, so a pre-candidate counts it.
            self._send(resp, to=m.frm, term=m.term)
            if not pre:
                self._election_elapsed = 0
                self.vote = m.frm
        else:
            self._send(resp, to=m.frm, reject=True)

    def _hup(self, transfer: bool) -> None:
        if self.role == Role.LEADER or not self.promotable():
            return
        if self._log.has_unapplied_conf_change():
            return  # our membership view may be stale until applied
        if self.cfg.pre_vote and not transfer:
            self._campaign(pre=True, transfer=False)
        else:
            self._campaign(pre=False, transfer=transfer)

    def _campaign(self, pre: bool, transfer: bool) -> None:
        if pre:
            self._become_pre_candidate()
            term, req, resp = self.term + 1, PreVote, PreVoteResp
        else:
            self._become_candidate()
            term, req, resp = self.term, Vote, VoteResp
        # Our own vote counts only after it (and our term) is persisted.
        self._msgs_after.append(resp(frm=self.id, to=self.id, term=term))
        li, lt = self._log.last_index(), self._log.last_term()
        extra = {"transfer": True} if transfer and not pre else {}
        for v in sorted(self._trk.voters):
            if v != self.id:
                self._send(req, to=v, term=term, last_index=li, last_term=lt, **extra)

    # --- follower -----------------------------------------------------------

    def _step_follower(self, m: Message) -> int | None:
        if isinstance(m, Propose):
            raise NotLeader(self.lead)
        if isinstance(m, TransferLeader):
            raise NotLeader(self.lead)
        if isinstance(m, App):
            self._election_elapsed = 0
            self.lead = m.frm
            self._handle_append(m)
        elif isinstance(m, Heartbeat):
            self._election_elapsed = 0
            self.lead = m.frm
            self._handle_heartbeat(m)
        elif isinstance(m, InstallSnapshot):
            self._election_elapsed = 0
            self.lead = m.frm
            self._handle_snapshot(m)
        elif isinstance(m, TimeoutNow):
            self._hup(transfer=True)
        elif isinstance(m, ReadIndex) and m.term == 0:
            if self.lead == NONE:
                raise NotLeader(NONE)
            self._send(ReadIndex, to=self.lead, context=m.context)
        elif isinstance(m, ReadIndexResp):
            self._read_states.append(ReadState(m.index, m.context))
        return None

    def _handle_append(self, m: App) -> None:
        if m.index < self._log.committed:
            self._send(AppResp, to=m.frm, index=self._log.committed)
            return
        last_new = self._log.maybe_append(m.index, m.log_term, m.commit, m.entries)
        if last_new is not None:
            self._send(AppResp, to=m.frm, index=last_new)
            return
        hint = min(m.index, self._log.last_index())
        hint, hint_term = self._log.find_conflict_by_term(hint, m.log_term)
        self._send(
            AppResp, to=m.frm, index=m.index, reject=True, reject_hint=hint, log_term=hint_term
        )

    def _handle_heartbeat(self, m: Heartbeat) -> None:
        if m.commit > self._log.last_index():
            # A leader only sends min(our match, its commit): this is no leader's message.
            raise InvalidMessage(f"heartbeat commit {m.commit} beyond our log")
        self._log.commit_to(m.commit)
        self._send(HeartbeatResp, to=m.frm, context=m.context)

    def _handle_snapshot(self, m: InstallSnapshot) -> None:
        snap = m.snapshot
        if snap.meta.index <= self._log.committed:
            self._send(InstallSnapshotResp, to=m.frm, index=self._log.committed)
            return
        if self._log.match_term(snap.meta.index, snap.meta.term):
            self._log.commit_to(snap.meta.index)  # we have it already: fast-forward
            self._send(InstallSnapshotResp, to=m.frm, index=self._log.committed)
            return
        self._log.restore(snap)
        self._trk = Tracker(self.cfg.max_inflight)
        self._trk.set_conf(snap.meta.conf_state, self._log.last_index() + 1)
        self._send(InstallSnapshotResp, to=m.frm, index=self._log.last_index())

    # --- candidate / pre-candidate -------------------------------------------

    def _step_candidate(self, m: Message) -> int | None:
        if isinstance(m, (Propose, TransferLeader)):
            raise NotLeader(NONE)
        if isinstance(m, ReadIndex) and m.term == 0:
            raise NotLeader(NONE)
        if isinstance(m, App):
            self._become_follower(m.term, m.frm)
            self._handle_append(m)
        elif isinstance(m, Heartbeat):
            self._become_follower(m.term, m.frm)
            self._handle_heartbeat(m)
        elif isinstance(m, InstallSnapshot):
            self._become_follower(m.term, m.frm)
            self._handle_snapshot(m)
        elif isinstance(m, PreVoteResp if self.role == Role.PRE_CANDIDATE else VoteResp):
            self._trk.record_vote(m.frm, not m.reject)
            result = self._trk.tally()
            if result == "won":
                if self.role == Role.PRE_CANDIDATE:
                    self._campaign(pre=False, transfer=False)
                else:
                    self._become_leader()
                    self._bcast_append()
            elif result == "lost":
                self._become_follower(self.term, NONE)
        return None

    # --- leader ---------------------------------------------------------------

    def _step_leader(self, m: Message) -> int | None:
        if isinstance(m, Beat):
            self._bcast_heartbeat()
            return None
        if isinstance(m, CheckQuorum):
            if not self._trk.quorum_active(self.id):
                self._become_follower(self.term, NONE)
                return None
            for nid, pr in self._trk.progress.items():
                if nid != self.id:
                    pr.recent_active = False
            return None
        if isinstance(m, Propose):
            return self._leader_propose(m)
        if isinstance(m, ReadIndex):
            if not self._committed_in_current_term():
                self._pending_reads.append(m)  # answered once our noop commits
            else:
                self._start_read(m)
            return None
        if isinstance(m, TransferLeader):
            self._start_transfer(m.transferee)
            return None
        pr = self._trk.progress.get(m.frm)
        if pr is None:
            return None
        if isinstance(m, AppResp):
            self._handle_app_resp(m.frm, m)
        elif isinstance(m, InstallSnapshotResp):
            self._handle_app_resp(m.frm, AppResp(frm=m.frm, term=m.term, index=m.index))
        elif isinstance(m, HeartbeatResp):
            pr.recent_active = True
            pr.paused = False
            if pr.match < self._log.last_index():
                self._maybe_send_append(m.frm, send_if_empty=True)
            if m.context:
                acks = self._read_only.ack(m.frm, m.context)
                if acks is not None and self._trk.has_quorum(acks):
                    for req in self._read_only.release(m.context):
                        self._respond_read(req.frm, req.context, req.index)
        return None

    def _leader_propose(self, m: Propose) -> int:
        if self.id not in self._trk.progress:
            raise ProposalDropped("this node was removed from the cluster")
        if self._lead_transferee != NONE:
            raise ProposalDropped(f"leadership transfer to {self._lead_transferee} in progress")
        if self._log.last_index() - self._log.committed >= self.cfg.max_uncommitted_entries:
            raise ProposalDropped("too many uncommitted entries")
        conf = any(e.kind == EntryKind.CONF_CHANGE for e in m.entries)
        if conf and self._pending_conf_index > self._log.applied:
            raise ConfChangePending(
                f"conf change at {self._pending_conf_index} unapplied (applied {self._log.applied})"
            )
        idx = 0
        for e in m.entries:
            idx = self._append(e)
        if conf:
            self._pending_conf_index = idx
        self._bcast_append()
        return idx

    def _append(self, e: Entry) -> int:
        """Leader appends at its term; its own ack waits for the fsync."""
        idx = self._log.last_index() + 1
        self._log.append([Entry(self.term, idx, e.kind, e.data)])
        self._msgs_after.append(AppResp(frm=self.id, to=self.id, term=self.term, index=idx))
        return idx

    def _handle_app_resp(self, frm: int, m: AppResp) -> None:
        pr = self._trk.progress[frm]
        pr.recent_active = True
        if m.reject:
            probe = m.reject_hint
            if m.log_term > 0:
                probe, _ = self._log.find_conflict_by_term(m.reject_hint, m.log_term)
            if pr.maybe_decr_to(m.index, probe):
                if pr.state == ProgressState.REPLICATE:
                    pr.become_probe()
                self._maybe_send_append(frm, send_if_empty=True)
            return
        was_paused = pr.is_paused()
        if not (
            pr.maybe_update(m.index) or (pr.match == m.index and pr.state == ProgressState.PROBE)
        ):
            return
        if pr.state == ProgressState.PROBE:
            pr.become_replicate()
        elif pr.state == ProgressState.SNAPSHOT and pr.match + 1 >= self._log.first_index():
            pr.become_probe()
            pr.become_replicate()
        elif pr.state == ProgressState.REPLICATE:
            pr.free_le(m.index)
        if self._maybe_commit():
            self._bcast_append()
        elif was_paused:
            self._maybe_send_append(frm, send_if_empty=True)
        while self._maybe_send_append(frm, send_if_empty=False):
            pass
        if frm == self._lead_transferee and pr.match == self._log.last_index():
            self._send(TimeoutNow, to=frm)

    def _maybe_send_append(self, to: int, send_if_empty: bool) -> bool:
        if to == self.id:
            return False
        pr = self._trk.progress[to]
        if pr.is_paused():
            return False
        prev = pr.next - 1
        prev_term = self._log.term(prev)
        ents: list[Entry] = []
        compacted = prev_term is None
        if not compacted and not (pr.state == ProgressState.REPLICATE and pr.window_full()):
            hi = min(pr.next + self.cfg.max_append_entries, self._log.last_index() + 1)
            try:
                ents = self._log.slice(pr.next, hi, self.cfg.max_append_bytes)
            except Compacted:  # the follower needs a snapshot
                compacted = True
        if compacted:
            snap = self._log.snapshot()
            if not pr.recent_active or snap.is_empty:
                return False
            pr.become_snapshot(snap.meta.index)
            self._send(InstallSnapshot, to=to, snapshot=snap)
            return True
        if not ents and not send_if_empty:
            return False
        self._send(
            App,
            to=to,
            index=prev,
            log_term=prev_term,
            entries=tuple(ents),
            commit=self._log.committed,
        )
        pr.sent_entries(ents[-1].index if ents else None)
        return True

    def _bcast_append(self) -> None:
        for nid in self._trk.members():
            self._maybe_send_append(nid, send_if_empty=True)

    def _bcast_heartbeat(self, context: bytes | None = None) -> None:
        ctx = self._read_only.last_context() if context is None else context
        for nid in self._trk.members():
            if nid != self.id:
                commit = min(self._trk.progress[nid].match, self._log.committed)
                self._send(Heartbeat, to=nid, commit=commit, context=ctx)

    def _maybe_commit(self) -> bool:
        """Commit by majority, but only entries of our own term (Raft §5.4.2)."""
        mci = self._trk.committed()
        if mci <= self._log.committed or self._log.term(mci) != self.term:
            return False
        self._log.commit_to(mci)
        if self._pending_reads:
            reads, self._pending_reads = self._pending_reads, []
            for r in reads:
                self._start_read(r)
        return True

    def _committed_in_current_term(self) -> bool:
        return self._log.term(self._log.committed) == self.term

    def _start_read(self, m: ReadIndex) -> None:
        frm = m.frm
        if self._trk.is_singleton() and self.id in self._trk.voters:
            self._respond_read(frm, m.context, self._log.committed)
            return
        self._read_only.add(self._log.committed, frm, m.context)
        self._read_only.ack(self.id, m.context)
        self._bcast_heartbeat(m.context)

    def _respond_read(self, frm: int, context: bytes, index: int) -> None:
        if frm == self.id:
            self._read_states.append(ReadState(index, context))
        else:
            self._send(ReadIndexResp, to=frm, index=index, context=context)

    def _start_transfer(self, to: int) -> None:
        if to not in self._trk.voters:
            raise ValueError(f"cannot transfer leadership to non-voter {to}")
        if to == self.id or to == self._lead_transferee:
            return
        self._election_elapsed = 0  # the transfer must finish within an election timeout
        self._lead_transferee = to
        pr = self._trk.progress[to]
        if pr.match == self._log.last_index():
            self._send(TimeoutNow, to=to)
        else:
            self._maybe_send_append(to, send_if_empty=True)

    # --- membership -----------------------------------------------------------

    def _apply_conf_change(self, cc: ConfChange) -> None:
        voters, learners = set(self._trk.voters), set(self._trk.learners)
        voters.discard(cc.node_id)
        learners.discard(cc.node_id)
        if cc.kind == ConfChangeKind.ADD_VOTER:
            voters.add(cc.node_id)
        elif cc.kind == ConfChangeKind.ADD_LEARNER:
            learners.add(cc.node_id)
        before = set(self._trk.progress)
        self._trk.set_conf(ConfState.of(voters, learners), self._log.last_index() + 1)
        if self.role != Role.LEADER:
            return
        if self.id not in self._trk.voters:
            self._become_follower(self.term, NONE)  # removed or demoted: step down
            return
        if self._lead_transferee not in self._trk.voters:
            self._lead_transferee = NONE
        if self._maybe_commit():
            self._bcast_append()
        for nid in sorted(set(self._trk.progress) - before):
            self._maybe_send_append(nid, send_if_empty=True)


def _validate(m: Message) -> None:
    """Reject what no correct peer sends, before it can corrupt the log."""
    if m.term < 0 or m.frm <= NONE:
        raise InvalidMessage(f"bad header in {type(m).__name__}")
    if isinstance(m, App):
        if m.index < 0 or m.log_term < 0 or m.commit < 0:
            raise InvalidMessage("negative index in App")
        prev_term = m.log_term
        for i, e in enumerate(m.entries):
            if e.index != m.index + 1 + i or e.term < prev_term or e.term > m.term:
                raise InvalidMessage("App entries are not a contiguous run of the leader's log")
            prev_term = e.term
    elif isinstance(m, Heartbeat) and m.commit < 0:
        raise InvalidMessage("negative commit in Heartbeat")
    elif isinstance(m, InstallSnapshot):
        meta = m.snapshot.meta
        if meta.index <= 0 or meta.term <= 0 or meta.term > m.term:
            raise InvalidMessage("bad snapshot metadata")
