"""Starting the processes of a distributed compression with torchrun's engine, on one machine or several.

torchrun is a thin command over ``torch.distributed.elastic``; calling the engine here (an elastic
agent per node, c10d rendezvous, no restarts) keeps every failure a Python exception that becomes
one line naming what went wrong, instead of the agent's tracebacks. The workers' own output
(progress bars, the archive's line) goes to the terminal as it comes.

A failure on any node ends the run on every node: the workers of the others lose their peers at
their next collective (gloo and nccl fail at once when a peer's process is gone) and their
launchers ask the roll (:mod:`necgs.distributed.roll`) which node failed or stopped. The archive
is only ever written whole (:func:`necgs.coding.archive.write_archive` renames a finished file),
and a launcher whose run failed removes the unfinished files its own workers may have left.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path

from torch.distributed.elastic.multiprocessing import DefaultLogsSpecs
from torch.distributed.elastic.multiprocessing.api import SignalException
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.elastic.rendezvous import RendezvousError
from torch.distributed.launcher.api import LaunchConfig, elastic_launch

from necgs.config import NecgsConfig
from necgs.distributed.roll import NodeRoll, Nodes, first_line
from necgs.errors import NecgsError
from necgs.paths import cache_dir, process_alive


def launch_compress(
    source: str | os.PathLike,
    output: str | os.PathLike,
    cfg: NecgsConfig,
    nproc: int,
    *,
    nodes: Nodes | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
) -> bool:
    """Compress ``source`` into ``output`` with ``nproc`` processes on this machine, as one node of ``nodes``.

    Every node runs this with the same source, output, settings, process count, endpoint and id,
    and its own node rank; all return once the archive is written. A relaunch of the same command
    on every node resumes training from the last checkpoint every rank has.

    Args:
        source: The set (a folder, zip, file or data set name), the same on every node.
        output: The archive path; node 0 writes it.
        cfg: Validated settings.
        nproc: Processes on this machine (1 to 256).
        nodes: The machines of the run (default: this one alone).
        checkpoint_dir: This node's checkpoint folder (default: a cache folder named after the output).

    Returns:
        True on the node that wrote the archive (node 0), False on the others.

    Raises:
        NecgsError: One line: a bad setting, a node that did not join or stopped (with the endpoint),
            a worker's own error, or a worker that crashed.
    """
    nodes = (nodes or Nodes()).validate()
    if not 1 <= nproc <= 256:
        raise NecgsError(f"--nproc must be in [1, 256], got {nproc}")
    ckpt = Path(checkpoint_dir) if checkpoint_dir else cache_dir("checkpoints", Path(output).stem)
    with tempfile.TemporaryDirectory(prefix="necgs-ddp-") as tmp:
        folder = Path(tmp)
        (folder / "config.json").write_text(json.dumps(cfg.to_dict()))
        (folder / "errors").mkdir()
        args = ["-m", "necgs.distributed", "--config", str(folder / "config.json"), str(source), str(output)]
        args += ["--node-rank", str(nodes.rank), "--checkpoint-dir", str(ckpt), "--errors", str(folder / "errors")]
        workers = _Workers(folder / "errors")
        roll = NodeRoll.join(nodes, nproc, workers.stop) if nodes.count > 1 else None
        try:
            failure = _run(_config(nodes, nproc, folder), args, workers, roll)
        except BaseException:
            if roll is not None:
                roll.finish("interrupted")
            raise
        if roll is not None:
            roll.finish(failure)
        if failure is not None:
            _remove_unfinished(Path(output))
            raise NecgsError(failure)
    return nodes.rank == 0


def _config(nodes: Nodes, nproc: int, folder: Path) -> LaunchConfig:
    """The elastic agent's settings: a fixed number of nodes, c10d rendezvous, no restarts."""
    one = nodes.count == 1  # torchrun --standalone: a private rendezvous on a free local port
    return LaunchConfig(
        min_nodes=nodes.count,
        max_nodes=nodes.count,
        nproc_per_node=nproc,
        run_id=uuid.uuid4().hex if one else nodes.run_id,
        rdzv_backend="c10d",
        rdzv_endpoint="localhost:0" if one else str(nodes.endpoint),
        rdzv_configs={"join_timeout": int(max(nodes.timeout, 1)), "read_timeout": int(max(nodes.timeout, 1))},
        max_restarts=0,
        monitor_interval=0.5,
        start_method="spawn",
        logs_specs=DefaultLogsSpecs(log_dir=str(folder / "logs")),
    )


class _Workers:
    """This node's worker processes: each leaves ``rank<r>.pid`` in the error folder when it starts."""

    def __init__(self, errors: Path) -> None:
        self.errors = errors

    def stop(self) -> None:
        """End this node's workers (the agent sees them fail and ends the run); called when a node is silent."""
        for pid_file in self.errors.glob("rank*.pid"):
            try:
                os.kill(int(pid_file.read_text()), signal.SIGTERM)
            except (OSError, ValueError):
                pass  # already gone, or the file is being written

    def lines(self) -> list[str]:
        """The lines the failed workers left, in rank order."""
        files = sorted(self.errors.glob("rank*.txt"), key=lambda p: int(p.stem[4:]))
        return [f"rank {p.stem[4:]}: {p.read_text().strip()}" for p in files]


def _run(config: LaunchConfig, args: list[str], workers: _Workers, roll: NodeRoll | None) -> str | None:
    """Run the agent; None when every worker of this node succeeded, else the line that says why not."""
    try:
        with _quiet_agent(), _threads(config.nproc_per_node):
            elastic_launch(config, sys.executable)(*args)
        return None
    except ChildFailedError as exc:
        return _why(exc, workers, roll, config)
    except SignalException as exc:
        if roll is not None and roll.silent is not None:
            return roll.silent
        raise KeyboardInterrupt from exc  # Ctrl-C or a kill: the CLI says "interrupted"
    except RendezvousError as exc:
        where = f"the rendezvous at {config.rdzv_endpoint}"
        return f"torch's rendezvous failed at {where}: {first_line(exc)}; no archive written"


def _why(exc: ChildFailedError, workers: _Workers, roll: NodeRoll | None, config: LaunchConfig) -> str:
    """One line for a failed run: a worker's own error, else what the other nodes tell, else the crash."""
    lines = workers.lines()
    own = [line for line in lines if ": error: " in line]
    if own:
        return own[0].split(": error: ", 1)[1]
    told = roll.diagnose() if roll is not None else None
    if told is not None:
        return told
    lost = [line for line in lines if ": lost: " in line]
    if lost:
        return f"{lost[0]} (rendezvous {config.rdzv_endpoint}); no archive written"
    rank, failure = min(exc.failures.items())
    return (
        f"process {rank} of this node crashed (exit status {failure.exitcode}; its output is above); no archive written"
    )


@contextmanager
def _quiet_agent():
    """Silence the elastic agent's log lines while it runs (failures come back as exceptions and are told once)."""
    loggers = [
        logging.getLogger(name)
        for name in list(logging.root.manager.loggerDict)
        if name.startswith(("torch.distributed.elastic", "torch.distributed.launcher"))
    ]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


@contextmanager
def _threads(nproc: int):
    """The workers' OMP_NUM_THREADS: this machine's cores shared by its processes, unless the user set it."""
    before = os.environ.get("OMP_NUM_THREADS")
    if before is None:
        os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 2) // nproc))
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("OMP_NUM_THREADS", None)


def _remove_unfinished(output: Path) -> None:
    """Remove unfinished archive files (``.<name>.<pid>.partial``) whose writer is no longer running."""
    for partial in output.parent.glob(f".{output.name}.*.partial"):
        pid = partial.name[len(output.name) + 2 : -len(".partial")]
        if pid.isdigit() and not process_alive(int(pid)):
            partial.unlink(missing_ok=True)
