"""Visitors kept apart: the run store records who made a run, lists the runs of given owners,
refuses another owner's run id, reads stores written before owners; the page's job queue holds
one job per session and hands the worker on in order."""

import sqlite3
import threading

import pandas as pd
import pytest

from necgs.evaluation.runner import EvaluationResult
from necgs.evaluation.runs import RunNotVisibleError, RunStore, run_record
from necgs.webapp import sessions
from necgs.webapp.jobs import JobAlreadyQueued, JobQueue, waiting_text


def result() -> EvaluationResult:
    return EvaluationResult("cad", pd.DataFrame([{"codec": "floor", "label": "f", "status": "ok"}]), pd.DataFrame())


def test_the_store_lists_the_runs_of_given_owners_and_refuses_the_others(tmp_path):
    store = RunStore(tmp_path)
    config = run_record("cad", ["draco"], [], 2)
    cli = store.create(result(), config)
    alice = store.create(result(), config, owner="alice")
    bob = store.create(result(), config, owner="bob")
    shared = store.create(result(), config, owner=sessions.SHARED_OWNER)
    assert list(store.runs().id) == [shared, bob, alice, cli]  # no filter: every run (the CLI's view)
    assert list(store.runs(owners=["alice", sessions.SHARED_OWNER]).id) == [shared, alice]
    assert list(store.runs(owners=["bob", None]).id) == [bob, cli]
    assert list(store.runs(owners=[]).id) == []
    assert store.latest(owners=["alice"]) == alice and store.latest("cad", owners=["carol"]) is None
    assert store.owner(cli) is None and store.owner(bob) == "bob"
    store.check_visible(alice, ["alice"])
    with pytest.raises(RunNotVisibleError, match=f"run {bob} belongs to another visitor"):
        store.check_visible(bob, ["alice", sessions.SHARED_OWNER])
    with pytest.raises(RunNotVisibleError):
        store.check_visible(cli, ["alice"])  # the CLI's runs only where the page is set to show them


def test_a_store_written_before_owners_reads_and_its_runs_are_the_clis(tmp_path):
    with sqlite3.connect(tmp_path / "results.sqlite") as db:
        db.executescript(
            "CREATE TABLE runs (id INTEGER PRIMARY KEY AUTOINCREMENT, created REAL, dataset TEXT, config TEXT,"
            " status TEXT);"
            "CREATE TABLE rows (run INTEGER, data TEXT); CREATE TABLE shape_rows (run INTEGER, data TEXT);"
        )
        db.execute("INSERT INTO runs (created, dataset, config, status) VALUES (0, 'cad', '{}', 'done')")
        db.execute('INSERT INTO rows VALUES (1, \'{"codec": "floor"}\')')
    store = RunStore(tmp_path)
    assert list(store.runs(owners=[None]).id) == [1] and list(store.runs(owners=["alice"]).id) == []
    assert store.load(1)[0].codec.tolist() == ["floor"]
    new = store.create(result(), {}, owner="alice")
    assert list(store.runs(owners=["alice"]).id) == [new]


def test_the_cli_runs_are_visible_only_where_the_setting_says_so(monkeypatch):
    monkeypatch.delenv(sessions.SHOW_CLI_RUNS_ENV, raising=False)
    assert sessions.visible_owners("s1") == ["s1", sessions.SHARED_OWNER]
    monkeypatch.setenv(sessions.SHOW_CLI_RUNS_ENV, "1")
    assert sessions.visible_owners("s1") == ["s1", sessions.SHARED_OWNER, None]


def test_the_queue_holds_one_job_per_session_and_hands_the_worker_on_in_order():
    queue = JobQueue()
    first = queue.join("a")
    second = queue.join("b")
    with pytest.raises(JobAlreadyQueued):
        queue.join("a")
    assert queue.wait_turn(first, 0.0) and not queue.wait_turn(second, 0.05)
    first.report(0.5, "train 5/10")
    place, total, running = queue.place(second)
    assert (place, total, running) == (2, 2, first)
    assert "number 2 of 2" in waiting_text(place, total, running) and "50%" in waiting_text(place, total, running)
    got = []
    waiter = threading.Thread(target=lambda: got.append(queue.wait_turn(second, 5.0)))
    waiter.start()
    queue.leave(first)
    waiter.join(5.0)
    assert got == [True] and queue.sessions() == ["b"]
    queue.leave(second)
    assert queue.join("a").started is not None  # a session may queue again once its job ended


def test_ending_a_session_cancels_its_job():
    flag = sessions.cancel_event("closing-tab")
    assert not flag.is_set()
    sessions.end_session("closing-tab")
    assert flag.is_set()
