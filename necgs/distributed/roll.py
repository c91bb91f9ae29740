"""The roll of the machines ("nodes") of one run: who joined, who is still alive, who failed and why.

Before torchrun's engine starts any worker, the launcher of every node checks in at the
rendezvous endpoint: node 0 hosts a ``TCPStore`` there (torch's key-value store; the c10d
rendezvous that follows shares the same server, ``multi_tenant``), and every node writes its
rank and process count under the run's id. So a node that never joins is named, with the
endpoint, by every node that did, within the rendezvous timeout, before any worker has
fitted a shape. While the run lasts each launcher beats once a second; a launcher that
stops beating (its machine died or was killed) is named by the others, and a node whose
workers failed leaves its one-line reason for the others to print.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from torch.distributed import TCPStore

from necgs.errors import NecgsError

#: Seconds between two heartbeats of a launcher.
BEAT = 1.0
#: A launcher whose heartbeat has not moved for this long is taken for gone (when its workers failed).
SILENT = 4.0


@dataclass(frozen=True)
class Nodes:
    """Where this machine stands in a run on several machines (torchrun's multi-node launch).

    Attributes:
        count: Machines in the run (torchrun's ``--nnodes``); every one runs the same command.
        rank: This machine's rank, 0 to count - 1 (``--node-rank``). Node 0 hosts the rendezvous,
            its process 0 writes the archive, and the shapes are shared in node-rank order.
        endpoint: ``HOST:PORT`` of node 0, reachable from every node (``--rdzv-endpoint``).
        run_id: The rendezvous id, the same on every node of one run (``--rdzv-id``).
        timeout: Seconds a node waits for the others to join, and for a silent one before it
            gives up (``--rdzv-timeout``).
    """

    count: int = 1
    rank: int = 0
    endpoint: str | None = None
    run_id: str = "necgs"
    timeout: float = 300.0

    def validate(self) -> Nodes:
        """Check the fields; a bad one is a one-line :class:`NecgsError`."""
        if not 1 <= self.count <= 1024:
            raise NecgsError(f"--nnodes must be in [1, 1024], got {self.count}")
        if not 0 <= self.rank < self.count:
            raise NecgsError(f"--node-rank must be in [0, {self.count - 1}] for --nnodes {self.count}, got {self.rank}")
        if not self.timeout > 0:
            raise NecgsError(f"--rdzv-timeout must be a positive number of seconds, got {self.timeout}")
        if not self.run_id or "/" in self.run_id:
            raise NecgsError(f"--rdzv-id must be a non-empty name without '/', got {self.run_id!r}")
        if self.count > 1:
            if not self.endpoint:
                raise NecgsError("--nnodes above 1 needs --rdzv-endpoint HOST:PORT (node 0's address, the same on all)")
            self.address()
        return self

    def address(self) -> tuple[str, int]:
        """(host, port) of the endpoint."""
        host, sep, port = (self.endpoint or "").rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise NecgsError(f"--rdzv-endpoint must be HOST:PORT with a port in [1, 65535], got {self.endpoint!r}")
        return host, int(port)


class NodeRoll:
    """This node's place in the roll of a run on several machines (use :meth:`join`).

    Args:
        nodes: The run's nodes and this node's rank.
        store: The store at the endpoint (the server itself on node 0).
        watch: A second connection, for the heartbeats.
        on_silent: Called from the heartbeat thread when another node has been silent for the whole
            timeout (a machine gone without closing its connections); the launcher stops its workers.
    """

    def __init__(self, nodes: Nodes, store: TCPStore, watch: TCPStore, on_silent: Callable[[], None]) -> None:
        self.nodes, self.store, self.watch, self.on_silent = nodes, store, watch, on_silent
        self.prefix = f"necgs/{nodes.run_id}/"
        self.silent: str | None = None  # why the heartbeat thread gave up on another node
        self._seen: dict[int, tuple[int, float]] = {}
        self._lock = threading.Lock()  # the watch connection and _seen serve two threads
        self._stop = threading.Event()

    @classmethod
    def join(cls, nodes: Nodes, nproc: int, on_silent: Callable[[], None]) -> NodeRoll:
        """Check in at the endpoint and wait until every node has (at most ``nodes.timeout`` seconds).

        Raises:
            NecgsError: One line naming the node(s) that did not join, or node 0's endpoint when it
                cannot be reached, or a node rank given twice, or nodes with different process counts.
        """
        host, port = nodes.address()
        where = f"the rendezvous at {nodes.endpoint} (id {nodes.run_id!r})"
        wait = timedelta(seconds=nodes.timeout)
        try:
            if nodes.rank != 0:
                _wait_for(host, port, nodes.timeout)
            store = TCPStore(host, port, None, nodes.rank == 0, wait, wait_for_workers=False, multi_tenant=True)
            watch = TCPStore(host, port, None, False, timedelta(seconds=max(SILENT, 1.0)), wait_for_workers=False)
        except (RuntimeError, ValueError, OSError) as exc:  # DistNetworkError / DistStoreError are RuntimeErrors
            if nodes.rank == 0:
                raise NecgsError(f"node 0 cannot open {where} here: {first_line(exc)}") from None
            raise NecgsError(
                f"node 0 did not open {where} within {nodes.timeout:g} s: start node 0 first, with the same endpoint"
            ) from None
        roll = cls(nodes, store, watch, on_silent)
        try:
            roll._check_in(nproc, where)
        except (RuntimeError, ValueError) as exc:  # node 0 closed the store: it gave up waiting, or failed
            raise NecgsError(
                f"node 0 closed {where} before all {nodes.count} nodes joined (see its message): {first_line(exc)}"
            ) from None
        threading.Thread(target=roll._beat, name="necgs-heartbeat", daemon=True).start()
        return roll

    def _key(self, name: str) -> str:
        return self.prefix + name

    def _check_in(self, nproc: int, where: str) -> None:
        """Write this node's rank and process count, wait for the others, and check they agree.

        Node 0 holds the store: when it gives up it first leaves its reason under ``abort`` and waits
        (a few heartbeats at most) for the nodes that joined to read it, so that they stop with the
        same line instead of finding the store gone.
        """
        me = self.nodes.rank
        if self.store.add(self._key(f"node{me}"), 1) > 1:
            raise NecgsError(f"node rank {me} joined {where} twice: give each machine its own --node-rank")
        self.store.set(self._key(f"nproc{me}"), str(nproc))
        deadline = time.monotonic() + self.nodes.timeout
        missing = self._missing()
        while missing and time.monotonic() < deadline:
            if me != 0 and self.store.check([self._key("abort")]):
                self.store.set(self._key(f"ack{me}"), "1")
                raise NecgsError(self.store.get(self._key("abort")).decode())
            time.sleep(0.2)
            missing = self._missing()
        problem = None
        if missing:
            names = ", ".join(str(r) for r in missing)
            problem = (
                f"node{'s' if len(missing) > 1 else ''} {names} of {self.nodes.count} did not join {where} "
                f"within {self.nodes.timeout:g} s; no archive written"
            )
        else:
            counts = {r: int(self.store.get(self._key(f"nproc{r}"))) for r in range(self.nodes.count)}
            if len(set(counts.values())) > 1:
                shown = ", ".join(f"node {r}: {c}" for r, c in counts.items())
                problem = f"every node must run the same --nproc ({shown})"
        if problem is not None:
            self._abort(problem)

    def _abort(self, problem: str) -> None:
        """Stop the check-in with ``problem``; node 0 first waits for the joined nodes to read it."""
        me = self.nodes.rank
        if me != 0:
            self.store.set(self._key(f"ack{me}"), "1")
            raise NecgsError(problem)
        self.store.set(self._key("abort"), problem)
        joined = [r for r in range(1, self.nodes.count) if r not in self._missing()]
        deadline = time.monotonic() + SILENT + BEAT
        while time.monotonic() < deadline and not all(self.store.check([self._key(f"ack{r}")]) for r in joined):
            time.sleep(0.2)
        raise NecgsError(problem)

    def _missing(self) -> list[int]:
        return [r for r in range(self.nodes.count) if not self.store.check([self._key(f"node{r}")])]

    def _beat(self) -> None:
        """Beat once a second; give up on a node silent for the whole timeout (a machine gone without a word)."""
        while not self._stop.wait(BEAT):
            try:
                with self._lock:
                    self.watch.add(self._key(f"beat{self.nodes.rank}"), 1)
                gone = self._gone(self.nodes.timeout)
            except (RuntimeError, ValueError):
                gone = [0]
            if gone and self.silent is None and not self._stop.is_set():
                self.silent = self._describe_gone(gone)
                self.on_silent()

    def _gone(self, after: float) -> list[int]:
        """Nodes whose heartbeat has not moved for ``after`` seconds and that did not say they are done."""
        with self._lock:
            return self._gone_locked(after)

    def _gone_locked(self, after: float) -> list[int]:
        now, gone = time.monotonic(), []
        for r in range(self.nodes.count):
            if r == self.nodes.rank:
                continue
            beat = self.watch.add(self._key(f"beat{r}"), 0)
            last = self._seen.get(r)
            if last is None or last[0] != beat:
                self._seen[r] = (beat, now)
            elif now - last[1] >= after and not self.watch.check([self._key(f"done{r}")]):
                gone.append(r)
        return gone

    def _describe_gone(self, gone: list[int]) -> str:
        host = self.nodes.endpoint
        if 0 in gone and self.nodes.rank != 0:
            return f"node 0 stopped answering at the rendezvous {host}; no archive written"
        names = f"node{'s' if len(gone) > 1 else ''} {', '.join(str(r) for r in gone)}"
        return f"{names} stopped (no heartbeat at the rendezvous {host}); no archive written"

    def diagnose(self) -> str | None:
        """After this node's workers failed: why, as far as the other nodes tell (a failure they left, a
        node that stopped beating), waiting at most a few heartbeats; None when they tell nothing."""
        if self.silent is not None:
            return self.silent
        deadline = time.monotonic() + SILENT + 2 * BEAT
        while time.monotonic() < deadline:
            try:
                for r in range(self.nodes.count):
                    key = self._key(f"failed{r}")
                    with self._lock:
                        told = self.watch.get(key).decode() if self.watch.check([key]) else None
                    if r != self.nodes.rank and told is not None:
                        return f"node {r} failed: {told}"
                gone = self._gone(SILENT)
            except (RuntimeError, ValueError):
                gone = [0]
            if gone:
                return self._describe_gone(gone)
            time.sleep(BEAT / 2)
        return None

    def finish(self, failure: str | None) -> None:
        """Leave the roll: say done (or why this node failed); node 0 waits for the others to leave (they
        need its store until then), at most the timeout."""
        self._stop.set()
        try:
            key = f"failed{self.nodes.rank}" if failure else f"done{self.nodes.rank}"
            self.store.set(self._key(key), failure or "ok")
            if self.nodes.rank == 0:
                deadline = time.monotonic() + (SILENT + 2 * BEAT if failure else self.nodes.timeout)
                while time.monotonic() < deadline and self._still_running():
                    time.sleep(BEAT / 2)
        except (RuntimeError, ValueError):
            pass  # the store is gone with node 0: nobody is left to tell

    def _still_running(self) -> bool:
        """Another node has neither left the roll nor gone silent."""
        left = [r for r in range(1, self.nodes.count) if self._left(r)]
        return len(left) < self.nodes.count - 1 and not self._gone(SILENT)

    def _left(self, r: int) -> bool:
        return bool(self.store.check([self._key(f"done{r}")]) or self.store.check([self._key(f"failed{r}")]))


def _wait_for(host: str, port: int, timeout: float) -> None:
    """Wait until something listens at host:port (node 0's store), so that torch's store client, which
    logs every failed try from C++, connects at its first; OSError (TimeoutError) after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=min(5.0, timeout)):
                return
        except OSError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.2)


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type's name when it has none)."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
