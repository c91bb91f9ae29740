"""Per-browser-session folders, cancel flags and what a session may see, removed when the tab
closes or goes quiet.

Every session works in its own folder under the system temp directory (which Gradio
serves, so files placed there download). A tab removes its folder and cancels its job when it
closes (``demo.unload``); a page heartbeat touches it while the tab is open, and
:func:`sweep_stale` ends sessions that have been quiet longer than a timeout, so nothing
outlives its session by more than a few minutes even if the unload is lost.

An ended session is remembered for :data:`ENDED_MEMORY_S`: work that was still running for it
(a job's last yield, a viewer being written) gets :class:`SessionClosed` from
:func:`session_dir` instead of a new folder that nobody would remove until the sweeper saw it
quiet. A request of the page itself (:func:`touch`, :func:`request_session`) revives it: the tab
is there after all.

A session sees its own runs, the first-launch run and, where :data:`SHOW_CLI_RUNS_ENV` is set
(a local page), the runs without an owner (``necgs evaluate``'s): :func:`visible_owners`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from necgs.errors import Cancelled
from necgs.evaluation.runs import RunStore
from necgs.paths import process_alive

#: A session with no heartbeat or request for this long is removed.
IDLE_TIMEOUT_S = 180.0
#: How often the sweeper looks for quiet sessions.
SWEEP_INTERVAL_S = 30.0
#: The owner recorded with the first-launch run, which every session sees.
SHARED_OWNER = "first-launch"
#: Set to 1 to list and serve the runs of ``necgs evaluate`` (no owner) on the page: for a local
#: page; off by default, since on a shared server they may hold someone's data.
SHOW_CLI_RUNS_ENV = "NECGS_SHOW_CLI_RUNS"
#: How long an ended session is remembered (so late work for it makes no folder).
ENDED_MEMORY_S = 3600.0


class SessionClosed(Cancelled):
    """Work asked for the folder of a session whose tab has closed: it stops as if cancelled."""


@dataclass
class _Session:
    folder: Path
    cancel: threading.Event = field(default_factory=threading.Event)
    seen: float = field(default_factory=time.monotonic)


_SESSIONS: dict[str, _Session] = {}
_ENDED: dict[str, float] = {}  # session -> when it ended (time.monotonic)
_LOCK = threading.Lock()


def sessions_root() -> Path:
    """This server's parent of every session folder (in the temp directory Gradio serves from)."""
    root = Path(tempfile.gettempdir()) / "necgs-sessions" / str(os.getpid())
    root.mkdir(parents=True, exist_ok=True)
    return root


def _entry(session: str, revive: bool = False) -> _Session:
    """The session's state, with a folder (made if missing), marked as active.

    Raises:
        SessionClosed: The session has ended and ``revive`` is False.
    """
    with _LOCK:
        if session in _ENDED:
            if not revive:
                raise SessionClosed(f"session {session[:8]} has closed")
            del _ENDED[session]
        entry = _SESSIONS.get(session)
        if entry is None or not entry.folder.is_dir():
            folder = Path(tempfile.mkdtemp(prefix="s-", dir=sessions_root()))
            entry = _SESSIONS[session] = _Session(folder, entry.cancel if entry else threading.Event())
        entry.seen = time.monotonic()
        return entry


def session_dir(session: str) -> Path:
    """The session's private folder (created on first use; marks the session as active).

    Raises:
        SessionClosed: The session has ended (its tab closed): no folder is made for it.
    """
    return _entry(session).folder


def request_session(request) -> str:
    """The session of a Gradio request (``default`` without one), marked as active.

    Args:
        request: The handler's ``gr.Request`` (anything with a ``session_hash``), or None.
    """
    session = (request.session_hash if request is not None else None) or "default"
    touch(session)
    return session


def touch(session: str) -> None:
    """Mark a session as active (the page's heartbeat or a request): revives an ended one."""
    _entry(session, revive=True)


def closed(session: str) -> bool:
    """Whether a session has ended (its tab closed or went quiet) and its folder is gone (asks
    without marking it active or making a folder)."""
    with _LOCK:
        entry = _SESSIONS.get(session)
        ended = session in _ENDED
    return ended or entry is None or not entry.folder.is_dir()


def cancel_event(session: str) -> threading.Event:
    """The session's cancel flag.

    Raises:
        SessionClosed: The session has ended.
    """
    return _entry(session).cancel


def end_session(session: str) -> None:
    """Cancel a session's job (it stops within a second of work), remove its folder and state,
    and remember that it ended (late work for it then makes no folder)."""
    now = time.monotonic()
    with _LOCK:
        entry = _SESSIONS.pop(session, None)
        _ENDED[session] = now
        for old in [s for s, t in _ENDED.items() if now - t > ENDED_MEMORY_S]:
            del _ENDED[old]
    if entry is not None:
        entry.cancel.set()
        shutil.rmtree(entry.folder, ignore_errors=True)


def show_cli_runs() -> bool:
    """Whether the page lists the runs without an owner (:data:`SHOW_CLI_RUNS_ENV` is 1)."""
    return os.environ.get(SHOW_CLI_RUNS_ENV, "") == "1"


def visible_owners(session: str) -> list[str | None]:
    """The owners of the runs a session may see: itself, the first-launch run and, where
    :func:`show_cli_runs`, the command line's (None)."""
    return [session, SHARED_OWNER, *([None] if show_cli_runs() else [])]


def active_sessions() -> list[str]:
    """Ids of the sessions that hold a folder."""
    with _LOCK:
        return list(_SESSIONS)


def sweep_stale(max_idle_s: float = IDLE_TIMEOUT_S) -> list[str]:
    """Remove sessions quiet for longer than ``max_idle_s``, and what servers that are gone left:
    their session folders and their partial runs (:meth:`RunStore.discard_orphaned`).

    Returns:
        The ids of the sessions removed.
    """
    now = time.monotonic()
    with _LOCK:
        stale = [s for s, e in _SESSIONS.items() if now - e.seen > max_idle_s]
        known = {e.folder for e in _SESSIONS.values()}
    for session in stale:
        end_session(session)
    root = sessions_root()
    for folder in root.iterdir():  # this server's folders whose session was dropped
        if folder not in known and time.time() - folder.stat().st_mtime > max_idle_s:
            shutil.rmtree(folder, ignore_errors=True)
    for other in root.parent.iterdir():  # left by a server that was killed
        if other.name.isdigit() and not process_alive(int(other.name)):
            shutil.rmtree(other, ignore_errors=True)
    RunStore().discard_orphaned()
    return stale


def start_sweeper(interval_s: float = SWEEP_INTERVAL_S, max_idle_s: float = IDLE_TIMEOUT_S) -> threading.Thread:
    """Sweep once now (before the first page is served), then in a daemon thread every ``interval_s`` seconds."""
    sweep_stale(max_idle_s)

    def loop() -> None:
        while True:
            time.sleep(interval_s)
            sweep_stale(max_idle_s)

    thread = threading.Thread(target=loop, name="necgs-session-sweeper", daemon=True)
    thread.start()
    return thread
