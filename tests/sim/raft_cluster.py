"""A simulated raft-lite cluster with KV clients, a fault schedule and checks.

`run_seed(seed)` is the whole randomized experiment for one seed: pick a
`Scenario` (network profile, cluster size, disk speed...) from the seed, run clients while faults
(loss, delay, duplication, partitions, crashes, restarts, membership
changes) happen, heal, let it settle, then check every invariant and the
linearizability of the client history. Same seed, same trace hash.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, field

from linearizability import check_kv
from raft_checks import SafetyChecker, Violation
from raft_kv import ClientConfig, Op, SimClient
from raft_net import LinkProfile, SimNet
from raft_node import Hooks, NodeOptions, SimNode

from manager.raft import ConfChange, ConfChangeKind, RaftConfig, RaftError, Role


@dataclass
class Outcome:
    seed: int
    trace: str
    ops: int
    acked: int
    pending: int
    leaders: int
    events: int
    sim_ms: float
    notes: list[str] = field(default_factory=list)


class Cluster:
    def __init__(
        self,
        seed: int,
        n: int = 3,
        cfg: RaftConfig | None = None,
        opts: NodeOptions | None = None,
        profile: LinkProfile | None = None,
        clients: int = 3,
        client_cfg: ClientConfig | None = None,
        drift: float = 0.0,
        readers: int = 0,
    ) -> None:
        self.net = SimNet(seed, profile)
        self.rng = self.net.rng
        self.cfg = cfg or RaftConfig()
        self.opts = opts or NodeOptions()
        self.checker = SafetyChecker()
        self.hooks = Hooks(self.checker.on_apply, self.checker.on_event, self.checker.on_ack)
        self.nodes: dict[int, SimNode] = {}
        ids = list(range(1, n + 1))
        for i in ids:
            self._make_node(i, ids, drift)
        for node in self.nodes.values():
            node.start()
        self.client_cfg = client_cfg or ClientConfig()
        self.clients = [self._make_client(f"c{k}") for k in range(clients)]
        for k in range(readers):
            reader = self._make_client(f"r{k}")
            reader.cfg = dataclasses.replace(self.client_cfg, pinned=self.rng.choice(ids))
            self.clients.append(reader)
        for c in self.clients:
            c.start()

    def _make_node(self, i: int, peers: list[int], drift: float = 0.0) -> SimNode:
        opts = dataclasses.replace(self.opts, drift=self.rng.uniform(-drift, drift))
        node = SimNode(i, self.net, self.cfg, opts, self.hooks, peers=peers)
        self.nodes[i] = node
        return node

    def _make_client(self, name: str) -> SimClient:
        rng = random.Random(self.rng.getrandbits(64))
        return SimClient(name, self.net, sorted(self.nodes), rng, self.client_cfg)

    # -- observation -----------------------------------------------------------

    def run(self, ms: float) -> None:
        self.net.run_until(self.net.now + ms)

    def leader(self) -> SimNode | None:
        best: SimNode | None = None
        for n in self.nodes.values():
            if n.core is None or n.core.role != Role.LEADER:
                continue
            if best is None or n.core.term > best.core.term:  # type: ignore[union-attr]
                best = n
        return best

    def members(self) -> list[SimNode]:
        """Nodes in the membership the newest leader (or any node) applied."""
        ref = self.leader() or next(n for n in self.nodes.values() if n.core is not None)
        assert ref.core is not None
        cs = ref.core.conf_state
        return [self.nodes[i] for i in sorted(cs.voters | cs.learners) if i in self.nodes]

    def known_members(self) -> list[int]:
        """Every node some live node still counts as a member (all, if none is up)."""
        ids: set[int] = set()
        for n in self.nodes.values():
            if n.core is not None:
                cs = n.core.conf_state
                ids |= cs.voters | cs.learners
        return sorted(i for i in ids if i in self.nodes) if ids else sorted(self.nodes)

    def run_until_leader(self, limit_ms: float = 10_000, step_ms: float = 10) -> SimNode:
        end = self.net.now + limit_ms
        while self.net.now < end:
            ld = self.leader()
            if (
                ld is not None
                and ld.core is not None
                and ld.core.commit_index >= ld.core.last_index
            ):
                return ld
            self.run(step_ms)
        raise AssertionError(f"seed {self.net.seed}: no leader within {limit_ms} ms")

    # -- faults ----------------------------------------------------------------

    def crash(self, i: int) -> None:
        if self.nodes[i].alive:
            self.nodes[i].crash()

    def restart(self, i: int) -> None:
        if not self.nodes[i].alive:
            self.nodes[i].start()

    def partition(self, groups: list[list[int]], clients: dict[str, int] | None = None) -> None:
        """Split the nodes. A client goes to the side `clients` names, else to
        its pinned node's side, else to a random side."""
        sides: list[list[object]] = [list(g) for g in groups]
        for c in self.clients:
            pinned = [s for s in sides if c.cfg.pinned in s]
            if clients and c.name in clients:
                sides[clients[c.name]].append(c.name)
            else:
                (pinned[0] if pinned else self.rng.choice(sides)).append(c.name)
        self.net.partition(sides)

    def heal(self) -> None:
        self.net.heal()

    def add_node(self, i: int) -> SimNode:
        node = self._make_node(i, [])
        node.start()
        for c in self.clients:
            c.nodes = sorted(self.nodes)
        return node

    def change(self, kind: ConfChangeKind, i: int) -> bool:
        ld = self.leader()
        if ld is None or ld.core is None:
            return False
        try:
            ld.core.propose_conf_change(ConfChange(kind, i))
        except (RaftError, ValueError):
            return False
        ld.pump()
        return True

    # -- the end ---------------------------------------------------------------

    def settle(self, limit_ms: float = 8000) -> None:
        """Heal, restart members, stop clients, run until everyone has applied all."""
        self.heal()
        self.net.profile = dataclasses.replace(self.net.profile, drop=0.0, dup=0.0)
        for i in self.known_members():
            self.restart(i)
        for c in self.clients:
            c.stop_at = self.net.now
        end = self.net.now + limit_ms
        while self.net.now < end:
            self.run(50)
            for n in self.members():  # membership may still change as logs commit
                self.restart(n.id)
            ld = self.leader()
            if ld is None or ld.core is None or any(c.busy for c in self.clients):
                continue
            commit = ld.core.commit_index
            if ld.core.log_term(commit) != ld.core.term:
                continue
            if all(n.core is not None and n.core.applied_index == commit for n in self.members()):
                return
        states = {
            n.id: None
            if n.core is None
            else (n.core.role.value, n.core.term, n.core.commit_index, n.core.applied_index)
            for n in self.nodes.values()
        }
        raise Violation(f"seed {self.net.seed}: no convergence after healing: {states}")

    def final_reads(self) -> None:
        """One more client reads every key: lost writes would show here."""
        reader = self._make_client("final")
        reader.cfg = dataclasses.replace(self.client_cfg, give_up_ms=10_000)
        reader.start()
        reader.stop_at = 0  # no random ops of its own
        for key in self.client_cfg.keys:
            reader.issue(Op("get", key))
            end = self.net.now + 12_000
            while reader.busy and self.net.now < end:
                self.run(20)
            if reader.history[-1].ret is None:
                raise Violation(f"seed {self.net.seed}: final read of {key!r} never answered")
        self.clients.append(reader)

    def check(self) -> None:
        members = self.members()
        self.checker.check_log_matching(members)
        self.checker.check_converged(members)
        self.checker.check_acked_durable()
        history = [h for c in self.clients for h in c.history]
        bad = [r for r in check_kv(history) if not r.ok]
        if bad:
            raise Violation(
                f"seed {self.net.seed}: history not linearizable for keys {[r.key for r in bad]}"
            )


def chaos(cl: Cluster, until: float, conf_changes: bool) -> None:
    """Schedule random faults between now and `until` (ms of simulated time)."""
    rng = cl.rng
    spare = [max(cl.nodes) + 1]

    def act() -> None:
        if cl.net.now >= until:
            return
        ids = sorted(cl.nodes)
        r = rng.random()
        ld = cl.leader()
        if r < 0.15:
            side = rng.sample(ids, rng.randint(1, len(ids) // 2))
            cl.partition([side, [i for i in ids if i not in side]])
        elif r < 0.30 and ld is not None:
            cl.partition([[ld.id], [i for i in ids if i != ld.id]])
        elif r < 0.45:
            cl.heal()
        elif r < 0.60:
            # Prefer a node in the middle of an fsync: its unpersisted Ready is lost.
            busy = [i for i in ids if cl.nodes[i].alive and cl.nodes[i].busy]
            cl.crash(rng.choice(busy if busy and rng.random() < 0.7 else ids))
        elif r < 0.68 and ld is not None:
            cl.crash(ld.id)
        elif r < 0.85:
            for i in ids:
                if not cl.nodes[i].alive and rng.random() < 0.7:
                    cl.restart(i)
        elif r < 0.90 and ld is not None and ld.core is not None:
            voters = sorted(ld.core.conf_state.voters - {ld.id})
            if voters:
                try:
                    ld.core.transfer_leadership(rng.choice(voters))
                    ld.pump()
                except (RaftError, ValueError):
                    pass
        elif conf_changes and ld is not None and ld.core is not None:
            voters = ld.core.conf_state.voters
            if len(voters) > 3 and rng.random() < 0.5:
                victim = rng.choice(sorted(voters - {ld.id}))
                if cl.change(ConfChangeKind.REMOVE_NODE, victim):
                    cl.net.trace("remove", victim)
            elif len(voters) < 5:
                new = spare[0]
                cl.add_node(new)
                if cl.change(ConfChangeKind.ADD_VOTER, new):
                    spare[0] += 1
                    cl.net.trace("add", new)
                else:
                    cl.nodes.pop(new).crash()
                    for c in cl.clients:
                        c.nodes = sorted(cl.nodes)
        cl.net.at(rng.uniform(150, 900), act)

    cl.net.at(rng.uniform(100, 600), act)


@dataclass(frozen=True)
class Scenario:
    """Everything a randomized run varies besides the seed's own dice."""

    seed: int
    nodes: int = 3
    base_ms: float = 2.0
    jitter_ms: float = 1.0
    drop: float = 0.0
    dup: float = 0.0
    fsync_ms: tuple[float, float] = (0.5, 4.0)
    early_send: bool = True
    snapshot_every: int = 40
    keep_entries: int = 5
    conf_changes: bool = False
    check_quorum: bool = True
    think_max_ms: float = 20.0
    clients: int = 3
    readers: int = 2
    fault_ms: float = 6000.0

    @classmethod
    def for_seed(cls, seed: int) -> Scenario:
        pick = random.Random(seed ^ 0x5EED)
        return cls(
            seed=seed,
            nodes=5 if pick.random() < 0.35 else 3,
            base_ms=pick.choice([0.5, 2.0, 10.0]),
            jitter_ms=pick.choice([0.2, 1.0, 5.0, 30.0]),
            drop=pick.choice([0.0, 0.01, 0.05, 0.15, 0.3]),
            dup=pick.choice([0.0, 0.02, 0.1]),
            fsync_ms=pick.choice([(0.5, 4.0), (2.0, 20.0), (10.0, 60.0)]),
            early_send=pick.random() < 0.5,
            snapshot_every=pick.choice([15, 40, 1000]),
            keep_entries=pick.choice([0, 5, 20]),
            conf_changes=pick.random() < 0.3,
            # Some runs have no leader lease, so a deposed leader lingers and
            # stale reads or writes would surface quickly.
            check_quorum=pick.random() < 0.75,
            think_max_ms=pick.choice([5.0, 20.0]),
        )


def run_seed(seed: int) -> Outcome:
    """One randomized experiment; raises Violation (with the seed) on any failure."""
    return run_scenario(Scenario.for_seed(seed))


def run_scenario(sc: Scenario) -> Outcome:
    ccfg = ClientConfig(
        keys=("a", "b", "c"),
        think_ms=(1.0, sc.think_max_ms),
        attempt_timeout_ms=200.0,
        give_up_ms=2000.0,
    )
    cl = Cluster(
        sc.seed,
        n=sc.nodes,
        cfg=RaftConfig(check_quorum=sc.check_quorum),
        opts=NodeOptions(
            fsync_ms=sc.fsync_ms,
            early_send=sc.early_send,
            snapshot_every=sc.snapshot_every,
            keep_entries=sc.keep_entries,
        ),
        profile=LinkProfile((0.1, sc.base_ms), sc.jitter_ms, sc.drop, sc.dup),
        clients=sc.clients,
        client_cfg=ccfg,
        drift=0.02,
        readers=sc.readers,
    )
    try:
        chaos(cl, sc.fault_ms, sc.conf_changes)
        cl.run(sc.fault_ms)
        cl.settle()
        cl.final_reads()
        cl.check()
    except Violation:
        raise
    except Exception as e:  # any crash inside the core is a failure of this seed
        raise Violation(f"{sc}: {type(e).__name__}: {e}") from e
    hist = [h for c in cl.clients for h in c.history]
    return Outcome(
        seed=sc.seed,
        trace=cl.net.trace_hash(),
        ops=len(hist),
        acked=sum(1 for h in hist if h.ret is not None),
        pending=sum(1 for h in hist if h.ret is None),
        leaders=len(cl.checker.leaders),
        events=cl.net.events,
        sim_ms=cl.net.now,
    )
