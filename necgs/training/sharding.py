"""Training on shards: which shapes a rank owns and the few collectives that keep the ranks agreeing.

Under ``torch.distributed`` rank r of W owns the shapes i with i % W == r (round-robin, so the
shares differ by at most one shape) and holds only their volumes and features. Every collective
here runs on every rank at the same point of training, or none does.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def current_rank() -> tuple[int, int]:
    """(rank, world size) of the initialized process group, else (0, 1)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def shard_of(n: int, rank: int, world: int) -> list[int]:
    """The shapes of a set of ``n`` that ``rank`` of ``world`` owns, in order."""
    return list(range(rank, n, world))


def _device() -> torch.device:
    """Where collectives' tensors live: the current GPU under nccl, else the CPU (gloo)."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def total_count(local: int) -> int:
    """The sum of ``local`` over all ranks."""
    t = torch.tensor([local], dtype=torch.int64, device=_device())
    dist.all_reduce(t)
    return int(t.item())


def global_abs_max(x: torch.Tensor) -> torch.Tensor:
    """max|x| over every rank's ``x``, a 0-dim tensor on ``x``'s device (the features' grid is the set's)."""
    m = x.detach().abs().max().reshape(1).to(_device(), torch.float32)
    dist.all_reduce(m, op=dist.ReduceOp.MAX)
    return m[0].to(x.device)


def agreed_epoch(epochs: list[int]) -> int:
    """The latest epoch in every rank's ``epochs`` (each rank's saved checkpoints), 0 if none is common."""
    mine = torch.full((2,), -1, dtype=torch.int64)
    mine[: len(epochs[-2:])] = torch.tensor(epochs[-2:], dtype=torch.int64)
    parts = [torch.zeros(2, dtype=torch.int64, device=_device()) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, mine.to(_device()))
    common = set.intersection(*({int(e) for e in p.tolist() if e >= 0} for p in parts))
    return max(common, default=0)


def all_ranks(ok: bool) -> bool:
    """True when ``ok`` holds on every rank."""
    t = torch.tensor([1 if ok else 0], dtype=torch.int64, device=_device())
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item())


def gather_rows(local: torch.Tensor, n: int, dst: int = 0) -> torch.Tensor | None:
    """Every rank's rows (its shard of a set of ``n``, round-robin) as one (n, ...) CPU tensor on ``dst``.

    Args:
        local: (n_r, ...) this rank's rows, in the order of :func:`shard_of`.
        n: The set's size.
        dst: The rank that receives the whole tensor.

    Returns:
        The (n, ...) tensor on ``dst``, None on every other rank.
    """
    rank, world = current_rank()
    per = (n + world - 1) // world
    padded = torch.zeros((per, *local.shape[1:]), dtype=local.dtype, device=_device())
    padded[: local.shape[0]] = local.to(_device())
    parts = [torch.zeros_like(padded) for _ in range(world)] if rank == dst else None
    dist.gather(padded, parts, dst=dst)
    if parts is None:
        return None
    full = torch.zeros((n, *local.shape[1:]), dtype=local.dtype)
    for r, part in enumerate(parts):
        rows = shard_of(n, r, world)
        full[rows] = part[: len(rows)].cpu()
    return full
