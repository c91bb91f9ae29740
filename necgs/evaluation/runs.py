"""The run store: every run's settings, results and files in one place, keyed by run id.

Under one root (default: the cache root, ``NECGS_CACHE_DIR``):

- ``results.sqlite``: per run its id, creation time, data set, settings (JSON), status
  ("done", or "partial" while more of it is computing, with the process computing it: a partial
  run whose process is gone is discarded by :meth:`RunStore.discard_orphaned`) and owner (the app's session that made
  it, or its first-launch run; none for ``necgs evaluate`` and the benchmarks, and for every run
  of a store written before owners were recorded), with its summary rows and per-shape rows
  (JSON, so columns a caller adds are kept);
- ``runs/<id>/``: the run's files, named in ``index.json``: the originals and every decoded
  mesh (PLY), each NeCGS archive, and per NeCGS variant its fitted volumes before compression
  (``.npy``) with their meshes.

``necgs evaluate`` and the benchmarks store a run's settings and results; the app also keeps
its files, and reads every run from here. Stores written before this module (the same two
places) read as they are.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from necgs.errors import NecgsError
from necgs.evaluation.runner import SUMMARY_COLUMNS, EvaluationResult
from necgs.io.loading import save_mesh
from necgs.io.mesh import Mesh
from necgs.paths import cache_dir, process_alive

#: The kinds of mesh folders a run keeps (besides ``original``), as named in its index.
MESH_KINDS = ("decoded", "fitted")


@dataclass
class FittedVariant:
    """A NeCGS variant's fitted volumes before compression and their meshes, per shape.

    Attributes:
        volumes: TSDF-Def volumes (4, K, K, K) in the grid frame.
        meshes: Each volume's mesh in the original shape's frame.
    """

    volumes: list[np.ndarray] = field(default_factory=list)
    meshes: list[Mesh] = field(default_factory=list)


def slug(text: str) -> str:
    """``text`` as a file name (runs of other characters than letters and digits become ``_``)."""
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_") or "x"


def run_record(dataset: str, codecs: Sequence[str], necgs: list[dict], shapes: int | None, **extra) -> dict:
    """A run's stored settings in the one schema every reader expects.

    Args:
        dataset: The data set's name.
        codecs: The codecs run (``necgs`` and the peers).
        necgs: The NeCGS settings run (the first is the reference); ignored without ``necgs``.
        shapes: How many shapes were used.
        **extra: More to record (the sample count, an ablation factor, a benchmark's name...).
    """
    return {
        "dataset": dataset,
        "codecs": list(codecs),
        "necgs": list(necgs) if "necgs" in codecs else [],
        "shapes": shapes,
        **extra,
    }


def _normalized(config: dict) -> dict:
    """A stored configuration in today's schema (``necgs`` a list, ``codecs`` a list, ``shapes`` set)."""
    if isinstance(config.get("necgs"), dict):  # runs stored before ablations: one setting
        config["necgs"] = [config["necgs"]]
    if isinstance(config.get("codecs"), str):  # benchmark runs stored before run_record: "necgs,draco"
        config["codecs"] = [c for c in config["codecs"].split(",") if c]
    if not config.get("shapes") and not config.get("limit"):
        config["shapes"] = "all"
    return config


class RunNotVisibleError(NecgsError):
    """A run id that exists but belongs to an owner the caller may not see."""


class RunStore:
    """Runs under one root: the SQLite registry and a folder per run (an embedded default; no server).

    Args:
        root: The store's folder (default: the cache root).
    """

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root else cache_dir()
        self.root.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.executescript(
                "CREATE TABLE IF NOT EXISTS runs (id INTEGER PRIMARY KEY AUTOINCREMENT, created REAL, dataset TEXT,"
                " config TEXT, status TEXT);"
                "CREATE TABLE IF NOT EXISTS rows (run INTEGER, data TEXT);"
                "CREATE TABLE IF NOT EXISTS shape_rows (run INTEGER, data TEXT);"
            )
            columns = {row[1] for row in db.execute("PRAGMA table_info(runs)")}
            if "owner" not in columns:  # a store written before owners were recorded: its runs have none
                db.execute("ALTER TABLE runs ADD COLUMN owner TEXT")
            if "pid" not in columns:  # the process computing a partial run (none in older stores)
                db.execute("ALTER TABLE runs ADD COLUMN pid INTEGER")

    @property
    def db_path(self) -> Path:
        """The SQLite registry."""
        return self.root / "results.sqlite"

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.db_path, timeout=30)

    # ------------------------------------------------------------------------ results
    def create(self, result: EvaluationResult, config: dict, status: str = "done", owner: str | None = None) -> int:
        """Store a new run's settings and results; returns its id (``status`` "partial" while more
        of it is computing: :meth:`save_results` then replaces them; ``owner``: who may see it in
        the app, None for the command line's runs). A partial run records this process, so that
        :meth:`discard_orphaned` can tell it from one whose process died."""
        pid = os.getpid() if status == "partial" else None
        with self._connect() as db:
            cur = db.execute(
                "INSERT INTO runs (created, dataset, config, status, owner, pid) VALUES (?, ?, ?, ?, ?, ?)",
                (time.time(), result.dataset, json.dumps(config), status, owner, pid),
            )
            run = int(cur.lastrowid)
            _insert_rows(db, run, result)
        return run

    def save_results(self, run: int, result: EvaluationResult, status: str = "done") -> None:
        """Replace a run's rows and status in one transaction (readers see the old or the new, never a mix)."""
        with self._connect() as db:
            db.execute("UPDATE runs SET status = ? WHERE id = ?", (status, run))
            db.execute("DELETE FROM rows WHERE run = ?", (run,))
            db.execute("DELETE FROM shape_rows WHERE run = ?", (run,))
            _insert_rows(db, run, result)

    def runs(self, dataset: str | None = None, owners: Collection[str | None] | None = None) -> pd.DataFrame:
        """Runs, newest first: id, created, dataset, config (a dict), status, owner.

        Args:
            dataset: Only the runs of this data set.
            owners: Only the runs of these owners (None in it: the runs without one, the command
                line's); default: every run.
        """
        query = "SELECT id, created, dataset, config, status, owner FROM runs"
        where, args = _owner_filter(owners)
        if dataset is not None:
            where.append("dataset = ?")
            args.append(dataset)
        if where:
            query += " WHERE " + " AND ".join(where)
        with self._connect() as db:
            df = pd.read_sql_query(query + " ORDER BY id DESC", db, params=tuple(args))
        df["created"] = pd.to_datetime(df["created"], unit="s").dt.strftime("%Y-%m-%d %H:%M:%S")
        df["config"] = [_normalized(json.loads(c)) for c in df["config"]]
        return df

    def exists(self, run: int) -> bool:
        """Whether the store holds this run id."""
        with self._connect() as db:
            return db.execute("SELECT 1 FROM runs WHERE id = ?", (run,)).fetchone() is not None

    def latest(self, dataset: str | None = None, owners: Collection[str | None] | None = None) -> int | None:
        """Id of the newest run (of a data set, of these owners as in :meth:`runs`), if any."""
        runs = self.runs(dataset, owners)
        return int(runs.id.iloc[0]) if len(runs) else None

    def owner(self, run: int) -> str | None:
        """Who made a run (None: the command line, or a store older than owners).

        Raises:
            NecgsError: No such run.
        """
        with self._connect() as db:
            row = db.execute("SELECT owner FROM runs WHERE id = ?", (run,)).fetchone()
        if row is None:
            raise NecgsError(f"no run {run}")
        return row[0]

    def set_owner(self, run: int, owner: str | None) -> None:
        """Record who a run belongs to (e.g. the app adopting its first-launch run of an older store)."""
        with self._connect() as db:
            db.execute("UPDATE runs SET owner = ? WHERE id = ?", (owner, run))

    def check_visible(self, run: int, owners: Collection[str | None]) -> None:
        """Refuse a run id of another owner.

        Raises:
            NecgsError: No such run.
            RunNotVisibleError: The run belongs to none of ``owners``.
        """
        if self.owner(run) not in set(owners):
            raise RunNotVisibleError(f"run {run} belongs to another visitor and is not shown here")

    def config(self, run: int) -> dict:
        """A stored run's settings (``necgs`` is always the list of its NeCGS settings).

        Raises:
            NecgsError: No such run.
        """
        with self._connect() as db:
            row = db.execute("SELECT config FROM runs WHERE id = ?", (run,)).fetchone()
        if row is None:
            raise NecgsError(f"no run {run}")
        return _normalized(json.loads(row[0]))

    def load(self, run: int) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Summary and per-shape rows of a run (with any extra columns stored with them).

        Raises:
            NecgsError: No rows stored for this run.
        """
        with self._connect() as db:
            rows = [json.loads(r[0]) for r in db.execute("SELECT data FROM rows WHERE run = ?", (run,))]
            shapes = [json.loads(r[0]) for r in db.execute("SELECT data FROM shape_rows WHERE run = ?", (run,))]
        if not rows:
            raise NecgsError(f"no run {run} in {self.db_path}")
        summary = pd.DataFrame(rows)  # the standard columns first, then any a caller added
        summary = summary.reindex(columns=[*SUMMARY_COLUMNS, *(c for c in summary if c not in SUMMARY_COLUMNS)])
        return summary, pd.DataFrame(shapes)

    def discard_orphaned(self) -> list[int]:
        """Discard the partial runs whose process is gone (a server stopped mid-job): they would
        show a run's first part as if it were all of it.

        Returns:
            The ids discarded.
        """
        with self._connect() as db:
            rows = db.execute("SELECT id, pid FROM runs WHERE status = 'partial'").fetchall()
        orphans = [int(run) for run, pid in rows if pid is None or not process_alive(int(pid))]
        for run in orphans:
            self.discard(run)
        return orphans

    def discard(self, run: int) -> None:
        """Remove a run: its rows and its folder (e.g. a partial run whose job did not finish)."""
        with self._connect() as db:
            for table, column in (("runs", "id"), ("rows", "run"), ("shape_rows", "run")):
                db.execute(f"DELETE FROM {table} WHERE {column} = ?", (run,))
        shutil.rmtree(self.folder(run), ignore_errors=True)

    # ------------------------------------------------------------------------ files
    def folder(self, run: int) -> Path:
        """Where a run's files are kept (it exists once files were saved)."""
        return self.root / "runs" / str(run)

    def save_files(
        self,
        run: int,
        result: EvaluationResult,
        fitted: dict[str, FittedVariant],
        keep: set[tuple[str, str]] = frozenset(),
    ) -> None:
        """Keep a run's originals, decoded meshes (PLY), NeCGS archives and fitted volumes.

        Args:
            run: The run id.
            result: The run's result, with its decoded meshes and blobs (``keep_decoded``).
            fitted: Per NeCGS variant label, its fitted volumes and their meshes.
            keep: (codec, label) whose files (and the originals) a partial stage of this run
                already wrote; they are not rewritten, since a reader may be reading them.
        """
        base = self.folder(run)
        for m in result.meshes if not keep else []:
            save_mesh(m, base / "original" / f"{slug(m.name)}.ply")
        index: dict = {"shapes": [m.name for m in result.meshes], "decoded": {}, "archives": {}, "fitted": {}}
        for (codec, label), meshes in result.decoded.items():
            key = f"{codec}::{label}"
            folder = base / "decoded" / slug(key)
            index["decoded"][key] = folder.name
            if codec == "necgs":
                index["archives"][key] = f"{slug(label)}.ncgs"
            if (codec, label) in keep:
                continue
            for m, orig in zip(meshes, result.meshes):
                save_mesh(Mesh(m.vertices, m.faces, orig.name), folder / f"{slug(orig.name)}.ply")
            if codec == "necgs":
                (base / index["archives"][key]).write_bytes(result.blobs[(codec, label)][0])
        for label, variant in fitted.items():
            folder = base / "fitted" / slug(label)
            index["fitted"][f"necgs::{label}"] = folder.name
            if ("necgs", label) in keep:
                continue
            folder.mkdir(parents=True, exist_ok=True)
            for vol, mesh, orig in zip(variant.volumes, variant.meshes, result.meshes):
                np.save(folder / f"{slug(orig.name)}.npy", vol.astype(np.float32), allow_pickle=False)
                save_mesh(mesh, folder / f"{slug(orig.name)}.ply")
        base.mkdir(parents=True, exist_ok=True)
        tmp = base / "index.json.tmp"
        tmp.write_text(json.dumps(index))
        os.replace(tmp, base / "index.json")  # readers see the old index or the new one

    def has_files(self, run: int) -> bool:
        """Whether the run's files were saved (its index is written last)."""
        return (self.folder(run) / "index.json").is_file()

    def index(self, run: int) -> dict:
        """Shapes, decoded variants, archives and fitted volumes stored for a run (empty lists if none)."""
        path = self.folder(run) / "index.json"
        index = json.loads(path.read_text()) if path.is_file() else {}
        return {"shapes": [], "decoded": {}, "archives": {}, "fitted": {}, **index}

    def mesh_file(self, run: int, kind: str, key: str | None, shape: str) -> Path | None:
        """A stored mesh of a run: ``original``, or of a ``key`` (``codec::label``) its ``decoded``
        mesh or (NeCGS) the mesh of its ``fitted`` volume; None where none is stored."""
        if kind == "original":
            path = self.folder(run) / "original" / f"{slug(shape)}.ply"
        elif kind in MESH_KINDS and key in (folders := self.index(run)[kind]):
            path = self.folder(run) / kind / folders[key] / f"{slug(shape)}.ply"
        else:
            return None
        return path if path.is_file() else None

    def volume_file(self, run: int, key: str, shape: str) -> Path | None:
        """The fitted volume (``.npy``, 4 x K x K x K) of a NeCGS ``key``'s shape, if stored."""
        folders = self.index(run)["fitted"]
        path = self.folder(run) / "fitted" / folders[key] / f"{slug(shape)}.npy" if key in folders else None
        return path if path is not None and path.is_file() else None

    def archive_file(self, run: int, key: str) -> Path | None:
        """The archive of a NeCGS ``key`` (``necgs::label``), if stored."""
        archives = self.index(run)["archives"]
        return self.folder(run) / archives[key] if key in archives else None

    def decoded_files(self, run: int, key: str) -> list[Path]:
        """The decoded meshes (PLY) of a ``key``, sorted by name (none if not stored)."""
        folders = self.index(run)["decoded"]
        return sorted((self.folder(run) / "decoded" / folders[key]).glob("*.ply")) if key in folders else []


def _owner_filter(owners: Collection[str | None] | None) -> tuple[list[str], list]:
    """SQL conditions (and their arguments) keeping the runs of ``owners`` (None: no condition)."""
    if owners is None:
        return [], []
    named = sorted({o for o in owners if o is not None})
    terms = [f"owner IN ({', '.join('?' * len(named))})"] if named else []
    if None in owners:
        terms.append("owner IS NULL")
    return [f"({' OR '.join(terms)})" if terms else "0"], list(named)


def _insert_rows(db: sqlite3.Connection, run: int, result: EvaluationResult) -> None:
    db.executemany(
        "INSERT INTO rows VALUES (?, ?)",
        [(run, json.dumps(r)) for r in json.loads(result.summary.to_json(orient="records"))],
    )
    db.executemany(
        "INSERT INTO shape_rows VALUES (?, ?)",
        [(run, json.dumps(r)) for r in json.loads(result.per_shape.to_json(orient="records"))],
    )
