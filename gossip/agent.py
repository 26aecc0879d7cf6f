"""GossipAgent: the asyncio shell around `SwimCore` + `Tables` (issue 5, part 4).

The cores decide; this module only moves bytes and time:

- UDP on `bind_addr:bind_port` (default 7946) carries SWIM probes, acks and
  piggybacked gossip as compound messages; every datagram is one sealed frame
  of at most `config.packet_size` (1400) bytes, larger ones are neither sent
  nor accepted (counted).
- TCP on the same port carries push-pull full-state sync and table syncs:
  one request frame and one reply frame per connection, each a u32 length and
  a sealed frame (a zero length means "no reply"). Both sides give up after
  `stream_timeout` seconds.
- The key ring (`set_keys`) seals with the primary and opens with every key,
  so a rotation (install everywhere, switch the primary, then remove the old
  key) loses nothing. Frames that fail to authenticate, replays, truncated,
  oversized or malformed input are dropped and counted, never raised.
- One timer, armed with `loop.call_at` at the core's `next_deadline()`, drives
  all protocol timers from the loop clock.

Everything runs on the event loop thread; the cores are never entered
concurrently. Callbacks are called synchronously from the loop (a coroutine
they return is scheduled as a task); their exceptions are logged and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import math
import random
import secrets
import socket
import struct
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from gossip import codec
from gossip.config import GossipConfig
from gossip.crypto import OVERHEAD, Channel, Keyring
from gossip.events import EndpointEvent, Event, MemberEvent
from gossip.messages import Addr, EndpointRecord, State, TableEntry
from gossip.swim import Output, SwimCore
from gossip.tables import Tables

__all__ = [
    "DEFAULT_PORT",
    "EntryCallback",
    "GossipAgent",
    "MemberCallback",
    "MemberInfo",
    "parse_address",
]

log = logging.getLogger("overlayd.gossip")

DEFAULT_PORT = 7946
_LEN = struct.Struct("!I")
_RCVBUF = 4 * 1024 * 1024
_MAX_INBOUND_STREAMS = 64

MemberCallback = Callable[[MemberEvent], object]
EntryCallback = Callable[[EndpointEvent], object]

# Replay windows are per sender and per epoch: a sender's epoch must grow across
# restarts. Wall-clock seconds do that between processes; this makes it hold for
# two agents of the same name started within one second in one process (tests).
_last_epoch: dict[str, int] = {}


def _fresh_epoch(name: str) -> int:
    epoch = max(int(time.time()), _last_epoch.get(name, 0) + 1) & 0xFFFFFFFF
    _last_epoch[name] = epoch
    return epoch


@dataclass(frozen=True, slots=True)
class MemberInfo:
    """One row of `GossipAgent.members()`."""

    name: str
    addr: Addr
    state: State
    incarnation: int
    meta: bytes = b""


def parse_address(text: str, default_port: int = DEFAULT_PORT) -> Addr:
    """`ip`, `ip:port`, `[v6]:port` or a bare IPv6 address -> (ip, port). Raises ValueError."""
    text = text.strip()
    host, port = text, default_port
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError(f"bad address {text!r}")
        host, rest = text[1:end], text[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"bad address {text!r}")
            port = int(rest[1:])
    elif text.count(":") == 1:
        host, p = text.split(":")
        port = int(p)
    ip = ipaddress.ip_address(host)
    if not 0 < port < 65536:
        raise ValueError(f"bad port in {text!r}")
    return (str(ip), port)


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, agent: GossipAgent) -> None:
        self.agent = agent

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.agent._on_datagram(data, addr)

    def error_received(self, exc: Exception) -> None:
        self.agent._counters["udp_errors"] += 1


class GossipAgent:
    """One node of the gossip cluster: SWIM membership + per-network endpoint tables."""

    def __init__(
        self,
        name: str,
        keys: Sequence[bytes],
        *,
        primary: bytes | None = None,
        bind_addr: str = "0.0.0.0",
        bind_port: int = DEFAULT_PORT,
        advertise_addr: str | None = None,
        advertise_port: int | None = None,
        config: GossipConfig | None = None,
        on_member: MemberCallback | None = None,
        on_entry: EntryCallback | None = None,
        local_entry_events: bool = False,
        meta: bytes = b"",
        stream_timeout: float = 5.0,
        leave_timeout: float = 1.0,
        epoch: int | None = None,
        rng: random.Random | None = None,
    ) -> None:
        """`keys`/`primary`: the key ring (32-byte keys; primary defaults to keys[0]).

        `bind_port` 0 picks a free port (the same one for UDP and TCP). With a
        wildcard `bind_addr`, `advertise_addr` is required. `on_entry` gets only
        other nodes' rows unless `local_entry_events`. `epoch` must grow across
        restarts of the same name (default: wall-clock seconds).
        """
        if not name or len(name.encode()) > 255:
            raise ValueError("a node name is 1-255 bytes")
        self.name = name
        self.cfg = config or GossipConfig.lan()
        self.bind_addr = str(ipaddress.ip_address(bind_addr))
        self.bind_port = bind_port
        if advertise_addr is None:
            if ipaddress.ip_address(bind_addr).is_unspecified:
                raise ValueError("advertise_addr is required with a wildcard bind address")
            advertise_addr = bind_addr
        self.advertise_addr = str(ipaddress.ip_address(advertise_addr))
        self._advertise_port = advertise_port
        self.on_member = on_member
        self.on_entry = on_entry
        self.local_entry_events = local_entry_events
        self.meta = meta
        self.stream_timeout = stream_timeout
        self.leave_timeout = leave_timeout
        self.rng = rng or random.Random(secrets.randbits(64))
        self._channel = Channel(
            self._ring(keys, primary),
            name,
            _fresh_epoch(name) if epoch is None else epoch,
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._core: SwimCore | None = None
        self._tables: Tables | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._inbound = 0
        self._closed = False
        self._port = bind_port
        self._counters: dict[str, int] = dict.fromkeys(
            (
                "packets_in",
                "packets_out",
                "bytes_in",
                "bytes_out",
                "streams_in",
                "streams_out",
                "stream_bytes_in",
                "stream_bytes_out",
                "stream_failures",
                "stream_errors_in",
                "dropped_oversized_in",
                "dropped_oversized_out",
                "dropped_streams_busy",
                "send_errors",
                "udp_errors",
                "handler_errors",
                "callback_errors",
                "member_events",
                "entry_events",
            ),
            0,
        )

    # --- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Bind UDP + TCP, build the cores and arm the timer."""
        if self._core is not None or self._closed:
            raise RuntimeError("a GossipAgent starts once")
        loop = asyncio.get_running_loop()
        self._loop = loop
        family = socket.AF_INET6 if ":" in self.bind_addr else socket.AF_INET
        for _attempt in range(32):
            udp, _ = await loop.create_datagram_endpoint(
                lambda: _Udp(self), local_addr=(self.bind_addr, self.bind_port), family=family
            )
            port = udp.get_extra_info("sockname")[1]
            try:
                tcp = await asyncio.start_server(
                    self._serve, self.bind_addr, port, family=family, reuse_address=True
                )
            except OSError:
                udp.close()
                if self.bind_port != 0:
                    raise
                continue
            break
        else:
            raise OSError("no port free for both UDP and TCP")
        sock = udp.get_extra_info("socket")
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RCVBUF)
        self._udp, self._tcp, self._port = udp, tcp, port
        now = loop.time()
        self._tables = Tables(self.name, self.cfg, self.rng, now)
        self._core = SwimCore(
            self.name,
            self.addr,
            self.cfg,
            self.rng,
            now,
            channel=self._channel,
            delegate=self._tables,
            meta=self.meta,
        )
        self._arm()
        log.debug("gossip agent %s listening on %s:%d", self.name, self.bind_addr, port)

    async def stop(self, leave: bool = True) -> None:
        """Stop; with `leave`, first tell the cluster (peers see MemberLeft, not MemberDead)."""
        if self._closed:
            return
        core = self._core
        if core is None:
            self._closed = True
            return
        if leave and core.num_live > 1:
            self._apply(core.leave(self._now()))
            deadline = self._now() + self.leave_timeout
            # Our Dead(self) stays queued until sent retransmit-limit times.
            while core.queue.has_key(self.name) and self._now() < deadline:
                await asyncio.sleep(self.cfg.gossip_interval / 2)
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._tcp is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._tcp.wait_closed(), 1.0)

    async def join(self, seeds: Sequence[str]) -> int:
        """Push-pull with each seed ("ip" or "ip:port"); returns how many answered (0: none).

        Retrying is the caller's choice. Our own address among the seeds is skipped.
        """
        core = self._need()
        addrs: list[Addr] = []
        for s in seeds:
            a = parse_address(s, self.port)
            if a != self.addr and a not in addrs:
                addrs.append(a)
        if not addrs:
            return 0
        out = core.join(addrs, self._now())
        streams, out.streams = out.streams, []
        self._apply(out)
        replies = await asyncio.gather(*(self._request(a, d) for a, d in streams))
        ok = 0
        for (addr, _), reply in zip(streams, replies, strict=True):
            if self._closed:
                break
            if not reply:
                self._apply(core.stream_failed(addr, self._now()))
                continue
            opened, errors = self._channel.stats.opened, core.stats.decode_errors
            self._apply(core.stream_reply(reply, addr, self._now()))
            if self._channel.stats.opened > opened and core.stats.decode_errors == errors:
                ok += 1
        return ok

    # --- keys ------------------------------------------------------------------------------

    def set_keys(self, keys: Sequence[bytes], primary: bytes) -> None:
        """Replace the key ring: `primary` seals, every key (primary included) opens."""
        self._channel.keyring = self._ring(keys, primary)

    @staticmethod
    def _ring(keys: Sequence[bytes], primary: bytes | None) -> Keyring:
        keys = list(keys)
        if primary is None:
            if not keys:
                raise ValueError("the key ring needs at least one key")
            primary = keys[0]
        return Keyring([primary, *(k for k in keys if k != primary)])

    # --- network tables ----------------------------------------------------------------------

    def join_network(self, net_id: str) -> None:
        """Take part in `net_id`: its rows are fetched from a peer in one round trip."""
        self._check_name(net_id, "network id")
        self._need_tables().join_network(net_id, self._now())
        self._kick()

    def leave_network(self, net_id: str) -> None:
        """Stop taking part: our rows there are deleted, the others forgotten (no events)."""
        self._need_tables().leave_network(net_id, self._now())
        self._kick()

    def put_entry(self, net_id: str, key: str, value: EndpointRecord) -> None:
        """Create or update our row `key` (the endpoint id) in `net_id`; peers see it at once.

        Raises ValueError if we do not take part in `net_id` or the record cannot be
        encoded (bad IP/MAC, strings over 255 bytes).
        """
        tables = self._need_tables()
        if value.endpoint_id != key:
            raise ValueError(f"record endpoint_id {value.endpoint_id!r} != key {key!r}")
        if net_id not in tables.networks:
            raise ValueError(f"not taking part in network {net_id!r}")
        self._check_name(key, "entry key")
        size = len(codec.encode(TableEntry(net_id, key, self.name, 0, value)))
        if size + OVERHEAD + 8 > self.cfg.packet_size:
            log.warning("entry %s/%s (%d bytes) only travels by stream sync", net_id, key, size)
        tables.publish(net_id, value, self._now())
        self._kick()

    def delete_entry(self, net_id: str, key: str) -> None:
        """Delete our row `key` in `net_id` (a tombstone); a no-op if we hold none."""
        self._need_tables().withdraw(net_id, key, self._now())
        self._kick()

    def entries(self, net_id: str) -> dict[str, EndpointRecord]:
        """Visible rows of `net_id` (live owners, ours included), by endpoint id."""
        return self._need_tables().records(net_id)

    def networks(self) -> set[str]:
        return set(self._need_tables().networks)

    def participants(self, net_id: str) -> set[str]:
        """Other nodes known to take part in `net_id`."""
        return self._need_tables().participants(net_id) - {self.name}

    def table_sizes(self) -> dict[str, int]:
        """Visible rows per network we take part in."""
        tables = self._need_tables()
        return {net: len(tables.records(net)) for net in sorted(tables.networks)}

    # --- introspection -------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The bound port (resolved after `start` when 0 was asked for)."""
        return self._port

    @property
    def addr(self) -> Addr:
        """The advertised (ip, port)."""
        return (self.advertise_addr, self._advertise_port or self._port)

    @property
    def running(self) -> bool:
        return self._core is not None and not self._closed

    def members(self) -> list[MemberInfo]:
        """Every member we know (ourselves included), sorted by name."""
        core = self._need()
        return [
            MemberInfo(m.name, m.addr, m.state, m.incarnation, m.meta)
            for m in sorted(core.members.values(), key=lambda m: m.name)
        ]

    def stats(self) -> dict[str, int]:
        """Counters for metrics: traffic, drops by reason, errors, member counts."""
        out = dict(self._counters)
        cs = self._channel.stats
        out["dropped_undecryptable"] = cs.unauthenticated + cs.bad_version + cs.truncated
        out["dropped_replayed"] = cs.replayed
        out["dropped_oversized_in"] += cs.oversize
        out["frames_sealed"] = cs.sealed
        out["frames_opened"] = cs.opened
        core = self._core
        if core is not None:
            out["dropped_malformed"] = core.stats.decode_errors
            out["incarnation"] = core.incarnation
            out["awareness"] = core.awareness.score
            counts = dict.fromkeys(State, 0)
            for m in core.members.values():
                counts[m.state] += 1
            for st, n in counts.items():
                out[f"members_{st.name.lower()}"] = n
        else:
            out["dropped_malformed"] = 0
        return out

    # --- I/O: datagrams -------------------------------------------------------------------------

    def _on_datagram(self, data: bytes, addr: tuple[Any, ...]) -> None:
        """Never raises: a bad packet is counted and dropped."""
        try:
            if self._closed or self._core is None:
                return
            c = self._counters
            c["packets_in"] += 1
            c["bytes_in"] += len(data)
            if len(data) > self.cfg.packet_size:
                c["dropped_oversized_in"] += 1
                return
            self._apply(self._core.receive(data, (addr[0], addr[1]), self._now()))
        except Exception:
            self._counters["handler_errors"] += 1
            log.exception("gossip: datagram from %s not handled", addr)
            self._arm_safely()

    def _sendto(self, addr: Addr, data: bytes) -> None:
        c = self._counters
        if len(data) > self.cfg.packet_size:
            c["dropped_oversized_out"] += 1
            return
        if self._udp is None or self._udp.is_closing():
            return
        try:
            self._udp.sendto(data, addr)
        except (OSError, ValueError):
            c["send_errors"] += 1
            return
        c["packets_out"] += 1
        c["bytes_out"] += len(data)

    # --- I/O: streams ---------------------------------------------------------------------------

    async def _request(self, addr: Addr, data: bytes) -> bytes | None:
        """One stream round trip; the reply frame, or None (failed, or nothing to say)."""
        c = self._counters
        writer: asyncio.StreamWriter | None = None
        try:
            async with asyncio.timeout(self.stream_timeout):
                local = None
                if not ipaddress.ip_address(self.bind_addr).is_unspecified:
                    local = (self.bind_addr, 0)
                reader, writer = await asyncio.open_connection(addr[0], addr[1], local_addr=local)
                writer.write(_LEN.pack(len(data)) + data)
                await writer.drain()
                c["streams_out"] += 1
                c["stream_bytes_out"] += len(data)
                reply = await self._read_frame(reader)
        except (OSError, EOFError, TimeoutError, asyncio.IncompleteReadError, ValueError):
            c["stream_failures"] += 1
            return None
        finally:
            if writer is not None:
                writer.close()
        if reply is None:
            c["stream_failures"] += 1
        else:
            c["stream_bytes_in"] += len(reply)
        return reply

    async def _read_frame(self, reader: asyncio.StreamReader) -> bytes | None:
        """A length-prefixed frame; None for an empty one; ValueError if it is too big."""
        (n,) = _LEN.unpack(await reader.readexactly(_LEN.size))
        if n == 0:
            return None
        if n > self.cfg.max_stream_size + OVERHEAD:
            self._counters["dropped_oversized_in"] += 1
            raise ValueError("stream frame too big")
        return await reader.readexactly(n)

    async def _stream_out(self, addr: Addr, data: bytes) -> None:
        reply = await self._request(addr, data)
        if self._closed or self._core is None:
            return
        try:
            if reply is None:
                self._apply(self._core.stream_failed(addr, self._now()))
            else:
                self._apply(self._core.stream_reply(reply, addr, self._now()))
        except Exception:
            self._counters["handler_errors"] += 1
            log.exception("gossip: stream reply from %s not handled", addr)
            self._arm_safely()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        c = self._counters
        if self._inbound >= _MAX_INBOUND_STREAMS or self._closed:
            c["dropped_streams_busy"] += 1
            writer.close()
            return
        self._inbound += 1
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            async with asyncio.timeout(self.stream_timeout):
                data = await self._read_frame(reader)
                if data is None or self._core is None:
                    return
                c["streams_in"] += 1
                c["stream_bytes_in"] += len(data)
                peer = writer.get_extra_info("peername") or ("0.0.0.0", 0)
                reply, out = self._core.handle_stream(data, (peer[0], peer[1]), self._now())
                self._apply(out)
                body = reply or b""
                writer.write(_LEN.pack(len(body)) + body)
                await writer.drain()
                c["stream_bytes_out"] += len(body)
        except (OSError, EOFError, TimeoutError, asyncio.IncompleteReadError, ValueError):
            c["stream_errors_in"] += 1
        except Exception:
            c["handler_errors"] += 1
            log.exception("gossip: inbound stream not handled")
            self._arm_safely()
        finally:
            self._inbound -= 1
            if task is not None:
                self._tasks.discard(task)
            writer.close()

    # --- the core's outputs and the timer -------------------------------------------------------------

    def _apply(self, out: Output) -> None:
        for addr, data in out.sends:
            self._sendto(addr, data)
        for addr, data in out.streams:
            self._spawn(self._stream_out(addr, data))
        for ev in out.events:
            self._deliver(ev)
        self._arm()

    def _deliver(self, ev: Event) -> None:
        if self._closed:
            return
        fn: Callable[[Any], object] | None
        if isinstance(ev, EndpointEvent):
            if ev.owner == self.name and not self.local_entry_events:
                return
            self._counters["entry_events"] += 1
            fn = self.on_entry
        else:
            self._counters["member_events"] += 1
            fn = self.on_member
        if fn is None:
            return
        try:
            res = fn(ev)
            if asyncio.iscoroutine(res):
                self._spawn(res)
            elif isinstance(res, Awaitable):
                self._spawn(_await(res))
        except Exception:
            self._counters["callback_errors"] += 1
            log.exception("gossip: callback failed on %r", ev)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        if self._closed or self._loop is None:
            coro.close()
            return
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._counters["callback_errors"] += 1
            log.error("gossip: task failed", exc_info=task.exception())

    def _arm(self) -> None:
        if self._closed or self._core is None or self._loop is None:
            return
        when = self._core.next_deadline()
        h = self._timer
        if h is not None:
            if h.when() == when:
                return
            h.cancel()
            self._timer = None
        if when < math.inf:
            self._timer = self._loop.call_at(when, self._fire, when)

    def _arm_safely(self) -> None:
        """After an unexpected error: re-arm, but never into a tight loop."""
        if self._closed or self._loop is None:
            return
        if self._timer is not None:
            self._timer.cancel()
        when = self._loop.time() + self.cfg.probe_interval
        self._timer = self._loop.call_at(when, self._fire, when)

    def _fire(self, when: float) -> None:
        self._timer = None
        if self._closed or self._core is None:
            return
        try:
            self._apply(self._core.tick(max(self._now(), when)))
        except Exception:
            self._counters["handler_errors"] += 1
            log.exception("gossip: timer failed")
            self._arm_safely()

    def _kick(self) -> None:
        """Run what a table operation made due at once (the eager push to peers)."""
        self._apply(self._need().tick(self._now()))

    # --- helpers -------------------------------------------------------------------------------

    def _now(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    def _need(self) -> SwimCore:
        if self._core is None or self._closed:
            raise RuntimeError("the gossip agent is not running")
        return self._core

    def _need_tables(self) -> Tables:
        self._need()
        assert self._tables is not None
        return self._tables

    @staticmethod
    def _check_name(text: str, what: str) -> None:
        if not text or len(text.encode()) > 255:
            raise ValueError(f"a {what} is 1-255 bytes")


async def _await(aw: Awaitable[Any]) -> Any:
    return await aw
