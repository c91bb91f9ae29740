"""Distributed compression on PyTorch's own engine: torchrun's launcher (torch.distributed.elastic) and DDP.

``necgs compress ... --nproc N`` starts N processes on this machine; with ``--nnodes M --node-rank R
--rdzv-endpoint HOST:PORT`` the same command on each of M machines makes one run of M x N processes
(docs/ARCHITECTURE.md, "Scaling out"). roll.py checks the machines in and watches them,
launcher.py starts the processes and turns any failure into one line, worker.py is what each
process runs: it fits and trains only its own shapes' volumes; process 0 of node 0 writes the archive.
"""

from necgs.distributed.launcher import launch_compress
from necgs.distributed.roll import Nodes

__all__ = ["Nodes", "launch_compress"]
