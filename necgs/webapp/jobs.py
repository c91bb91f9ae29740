"""The page's one worker and its queue: jobs run one at a time, in the order they were asked for,
and a session holds at most one job (running or waiting).

A job's handler joins the queue (:meth:`JobQueue.join`), waits for its turn a second at a time
(:meth:`JobQueue.wait_turn`) so that it can show its place and notice a Cancel or a closed tab,
reports its progress on its ticket while it runs (which the jobs waiting behind it show), and
leaves the queue however it ends (:meth:`JobQueue.leave`), which hands the worker to the next.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from necgs.errors import NecgsError


class JobAlreadyQueued(NecgsError):
    """The session already has a job running or waiting."""


@dataclass
class Ticket:
    """A session's place in the queue and, once running, its progress.

    Attributes:
        session: The session that asked for the job.
        started: When the job got the worker (None while it waits).
        fraction: Done fraction of the running job.
        text: What the running job is doing.
    """

    session: str
    started: float | None = None
    fraction: float = 0.0
    text: str = "starting"

    def report(self, fraction: float, text: str) -> None:
        """Record the running job's progress (shown to the jobs waiting behind it)."""
        self.fraction, self.text = fraction, text

    def eta_s(self) -> float | None:
        """Seconds the running job may still take, from its progress so far (None before any)."""
        if self.started is None or self.fraction <= 0.02:
            return None
        elapsed = time.monotonic() - self.started
        return elapsed * (1.0 - self.fraction) / self.fraction


class JobQueue:
    """Jobs in the order asked; the first holds the worker."""

    def __init__(self) -> None:
        self._turn = threading.Condition()
        self._tickets: list[Ticket] = []

    def join(self, session: str) -> Ticket:
        """Queue a job for ``session``.

        Raises:
            JobAlreadyQueued: The session has a job running or waiting.
        """
        with self._turn:
            if any(t.session == session for t in self._tickets):
                raise JobAlreadyQueued("you already have a job running or waiting: wait for it, or press Cancel")
            ticket = Ticket(session)
            self._tickets.append(ticket)
            self._start_first()
            return ticket

    def wait_turn(self, ticket: Ticket, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for ``ticket`` to hold the worker; whether it does."""
        with self._turn:
            self._turn.wait_for(lambda: ticket.started is not None, timeout=timeout_s)
            return ticket.started is not None

    def place(self, ticket: Ticket) -> tuple[int, int, Ticket | None]:
        """(its place: 1 holds the worker, the number of jobs, the job holding the worker)."""
        with self._turn:
            if ticket not in self._tickets:
                return 0, len(self._tickets), None
            return self._tickets.index(ticket) + 1, len(self._tickets), self._tickets[0]

    def leave(self, ticket: Ticket) -> None:
        """Remove a ticket, running or waiting; the next job gets the worker."""
        with self._turn:
            if ticket in self._tickets:
                self._tickets.remove(ticket)
            self._start_first()

    def ticket_of(self, session: str) -> Ticket | None:
        """The session's ticket (its job running or waiting), if it has one."""
        with self._turn:
            return next((t for t in self._tickets if t.session == session), None)

    def sessions(self) -> list[str]:
        """The sessions with a job, in queue order."""
        with self._turn:
            return [t.session for t in self._tickets]

    def _start_first(self) -> None:
        if self._tickets and self._tickets[0].started is None:
            self._tickets[0].started = time.monotonic()
        self._turn.notify_all()


#: The server's one queue of jobs.
JOBS = JobQueue()


def waiting_text(place: int, total: int, running: Ticket | None) -> str:
    """What a waiting visitor reads: their place, the running job's progress and an estimate."""
    ahead = place - 1
    text = f"Waiting for the worker: your job is number {place} of {total} ({ahead} ahead of it)."
    if running is not None:
        eta = running.eta_s()
        text += f" The running job is at {100 * running.fraction:.0f}% ({running.text})"
        text += f", about {_duration(eta)} left." if eta is not None else "."
    return text + " Press Cancel to leave the queue."


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"
