"""Distributed data parallel helpers (torch.distributed; launched with ``torchrun``).

``torchrun --nproc_per_node P -m maskrcnn.cli train ...`` sets RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR and MASTER_PORT; ``init_distributed`` reads them (env:// initialisation) and picks the
backend: nccl when the process uses CUDA, gloo on CPU. Without those variables everything here is a
no-op for a single process, so the same code path trains on one CPU or eight GPUs. The reductions
(``all_reduce_mean``, ``any_true``, ``first_rank_with``, ``first_nonzero``) put their tensor where the
backend can reduce it (``reduce_device``: NCCL takes CUDA tensors only), so callers do not say where.
Sharded validation gathers its result records on rank 0 (``gather_objects``) and evaluates with rank 0's
buffers (``broadcast_buffers``); collectives wait ``COLLECTIVE_TIMEOUT`` (60 minutes) for a slow peer.
``error_line`` decides what each process prints for an error (once for one every process raises together,
``mark_shared``; ``rank N:`` for a process's own, ``mark_own``; a setup error also from each other
machine's first process, and from any process whose setup error rank 0 did not report alike,
``rank0_setup_error``; "another process stopped", with the peer's address, for a peer's death:
``is_peer_loss``, ``peer_loss_line``).

A message every process shares prints once, from torchrun's rank 0: notes through ``say_on_launch_rank0``;
the warnings and log records of the setup (the config's "given twice", the dataset's skipped records and
their summary: every process reads the same config and the same JSON) through ``setup_said_by_rank0``,
which the training command holds around its setup. From the first iteration on, each process reads its own
share of the images, and what it warns of is its own: named ``rank N: ...`` (``warnings_name_the_rank``).
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import re
import sys
import time
import warnings
from typing import Dict, List, Optional, Tuple

import torch
import torch.distributed as dist

# How long a collective waits for the other processes before it fails. Rank 0 writes checkpoints (and,
# before evaluation was sharded, evaluated alone) while the others wait in the next collective; NCCL's
# default of 10 minutes (in CUDA builds) ended long runs at a slow save or a large validation set. An hour
# outlasts those and still ends a run whose peer truly hangs.
COLLECTIVE_TIMEOUT = datetime.timedelta(minutes=60)


def env_world() -> Tuple[int, int, int]:
    """(rank, world_size, local_rank) from torchrun's environment, (0, 1, 0) without it.

    A partial or inconsistent set (a ``RANK`` left over in a shell or a job script without
    ``WORLD_SIZE``, a ``WORLD_SIZE`` without ``RANK``, a rank not below the world size, a value that is
    not a number) is a ValueError naming the variables: left to the sampler it read "rank 1 is not in
    [0, world_size=1)" once the run folder had been written. ``RANK=0`` / ``LOCAL_RANK=0`` alone are one
    process, as without them."""
    env = os.environ
    values = {}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        text = env.get(name)
        if text is None or not text.strip():
            values[name] = None
            continue
        try:
            values[name] = int(text)
        except ValueError:
            raise ValueError(f"the environment variable {name}={text!r} is not a whole number (torchrun sets "
                             "RANK, WORLD_SIZE and LOCAL_RANK; unset it to train in one process)") from None
    rank, world, local = values["RANK"], values["WORLD_SIZE"], values["LOCAL_RANK"]
    how = "start the processes with torchrun (it sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT)"
    if world is not None and world < 1:
        raise ValueError(f"the environment variable WORLD_SIZE={world} is not a number of processes (>= 1)")
    if world is None:
        for name, value in (("RANK", rank), ("LOCAL_RANK", local)):
            if value:
                raise ValueError(f"the environment variable {name}={value} is set but WORLD_SIZE is not: "
                                 f"{how}, or unset {name} to train in one process")
    elif world > 1 and rank is None:
        raise ValueError(f"the environment variable WORLD_SIZE={world} is set but RANK is not: {how}, or "
                         "unset WORLD_SIZE to train in one process")
    world = 1 if world is None else world
    for name, value in (("RANK", rank), ("LOCAL_RANK", local)):
        if value is not None and not 0 <= value < world:
            raise ValueError(f"the environment variable {name}={value} is not in [0, WORLD_SIZE={world}): "
                             f"{how}")
    return (rank or 0, world, local or 0)


def check_rendezvous_env(world_size: int) -> None:
    """Before joining a group of ``world_size`` > 1 processes: env:// initialisation needs MASTER_ADDR and
    MASTER_PORT (torchrun sets them); without them torch fails deep in its rendezvous. One error naming
    what is missing."""
    missing = [name for name in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(name, "").strip()]
    if world_size > 1 and missing:
        raise ValueError(f"the environment variable WORLD_SIZE={world_size} is set but "
                         f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not: start the "
                         "processes with torchrun (it sets them), or unset RANK, WORLD_SIZE and LOCAL_RANK "
                         "to train in one process")


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    return dist.get_rank() if is_initialized() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_initialized() else 1


def is_main_process() -> bool:
    return get_rank() == 0


def say_on_launch_rank0(line: str, file=None) -> None:
    """Print ``line`` (to ``file``, stdout by default; flushed) in the process torchrun ranked 0 only:
    the launch rank, known before the process group is joined (``is_main_process`` is true in every
    process until then), so one process says what all of them would."""
    if env_world()[0] == 0:
        print(line, file=file or sys.stdout, flush=True)


@contextlib.contextmanager
def setup_said_by_rank0():
    """For the block, in a process torchrun ranked other than 0 that is not its machine's first
    (LOCAL_RANK 0): no warning (of this library or another) and no log record below ERROR is shown;
    its machine's first process shows the same ones (restored on exit). For the setup of a run, which
    every process does alike (the same config, the same annotation file): 8 GPUs printed each "given
    twice" warning and each skipped record 8 times. Each machine still says its own (its disk may lack
    files another's has: its processes then train on other images), as ``error_line`` lets each
    machine's first process print. Errors are not affected. Nothing changes in a single process."""
    rank, _, local_rank = env_world()
    if rank == 0 or local_rank == 0:
        yield
        return
    disabled = logging.root.manager.disable
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.disable(logging.WARNING)
        try:
            yield
        finally:
            logging.disable(disabled)


@contextlib.contextmanager
def warnings_name_the_rank():
    """For the block, in a process other than rank 0 of a group: each warning it shows reads ``rank N:
    ...``, as ``error_line`` names a process's own error (in training each process reads its own share
    of the images: "x.png: cannot decode image" of rank 1 is not rank 0's). Restored on exit; nothing
    changes in rank 0 or a single process."""
    rank = get_rank()
    if get_world_size() <= 1 or rank == 0:
        yield
        return
    shown = warnings.formatwarning

    def formatwarning(message, *args, **kwargs):
        return shown(f"rank {rank}: {message}", *args, **kwargs)

    warnings.formatwarning = formatwarning
    try:
        yield
    finally:
        if warnings.formatwarning is formatwarning:  # one set since (by another block) is left in place
            warnings.formatwarning = shown


def init_distributed(device: str = "cpu") -> Tuple[int, int, torch.device]:
    """Join the process group if torchrun started us; returns (rank, world_size, device).

    On CUDA each process takes the GPU of its LOCAL_RANK.
    """
    rank, world_size, local_rank = env_world()
    dev = torch.device(device)
    if dev.type == "cuda" and world_size > 1:
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
    if world_size > 1 and not is_initialized():
        try:
            check_rendezvous_env(world_size)
        except ValueError as e:  # each process started by hand prints its own (rank 0 may not be there)
            raise mark_own(e) from None
        backend = "nccl" if dev.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, init_method="env://", rank=rank, world_size=world_size,
                                timeout=COLLECTIVE_TIMEOUT)
    return rank, world_size, dev


# How long a rank leaves the interpreter to gloo's worker threads before it goes on to exit
COLLECTIVE_SETTLE_S = 0.2


def cleanup(*, wait_for_peers: bool = True) -> None:
    """Leave the process group. After a normal end every rank waits for the others first: a rank that
    tears its gloo connections down while a peer is still writing its last checkpoint can abort either
    process ("terminate called without an active exception"). After an error there is no waiting (the
    peers may be inside another collective, or gone).

    Then a short sleep, on every path. A gloo worker thread lets go of a finished collective's tensors
    only after the caller has its result, and letting go of a tensor Python made takes the interpreter
    lock; DDP keeps the process group (and those threads) alive past ``destroy_process_group``, so a
    process that exits within those few milliseconds had its worker thread meet a finalising
    interpreter, which ends the process with SIGABRT after a run that succeeded (seen about once in 15
    two-rank runs). Sleeping releases the lock, and the threads finish first."""
    if is_initialized():
        if wait_for_peers:
            dist.barrier()
        time.sleep(COLLECTIVE_SETTLE_S)
        dist.destroy_process_group()


def barrier() -> None:
    if is_initialized():
        dist.barrier()


def reduce_device() -> Optional[torch.device]:
    """Where a tensor to all-reduce goes: this process's GPU under NCCL (it reduces CUDA tensors only,
    and ``init_distributed`` set each process's GPU), else None (the CPU: gloo)."""
    if is_initialized() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return None


def all_reduce_mean(values: Dict[str, float], device=None) -> Dict[str, float]:
    """Mean of scalar values over all processes (for logging), keyed in the order of ``values`` (the
    loss terms then print and log in one order, with one process or many). ``device``: where to reduce
    (None: ``reduce_device()``)."""
    if not is_initialized() or not values:
        return dict(values)
    keys = sorted(values)  # one order on every rank, whatever order each built its dict in
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64,
                     device=reduce_device() if device is None else device)
    dist.all_reduce(t)
    t /= get_world_size()
    mean = dict(zip(keys, t.tolist()))
    return {k: float(mean[k]) for k in values}


def any_true(flag: bool, device=None) -> bool:
    """True on every rank when ``flag`` is True on some rank (e.g. a NaN loss or a SIGTERM on one).
    ``device``: where to reduce (None: ``reduce_device()``)."""
    if not is_initialized():
        return bool(flag)
    t = torch.tensor([1.0 if flag else 0.0], device=reduce_device() if device is None else device)
    dist.all_reduce(t)
    return bool(t.item() > 0)


def first_rank_with(flag: bool, device=None) -> Optional[int]:
    """The lowest rank whose ``flag`` is True, the same on every rank; None when no rank's is (one
    collective, as ``any_true``, which it can replace when the ranks must also agree on who saw it: one
    of them then reports the details, the others only follow). ``device``: as ``any_true``'s."""
    if not is_initialized():
        return 0 if flag else None
    world = get_world_size()
    t = torch.tensor([float(get_rank() if flag else world)],
                     device=reduce_device() if device is None else device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    first = int(t.item())
    return None if first >= world else first


def first_nonzero(value: int, device=None) -> int:
    """The value of the lowest rank whose ``value`` is not 0, the same on every rank; 0 when every rank's
    is (one collective, as ``any_true``, which it can replace when the ranks must also agree on what was
    seen: the number of the signal that stopped the run, which each process's exit status reports).
    ``device``: as ``any_true``'s."""
    if not is_initialized():
        return int(value)
    t = torch.zeros(get_world_size(), dtype=torch.float64,
                    device=reduce_device() if device is None else device)
    t[get_rank()] = float(value)  # each rank its own slot: a sum puts every rank's value in every process
    dist.all_reduce(t)
    return next((int(v) for v in t.tolist() if v), 0)


def broadcast_buffers(module: torch.nn.Module) -> None:
    """Give every process rank 0's buffers of ``module`` (in place; rank 0's are unchanged). Trainable batch
    norm updates each process's running statistics with its own share of the batch (DDP copies rank 0's to
    the others only at the next training forward): a process that evaluated with its own would score
    other weights than the checkpoint's, which holds rank 0's."""
    if not is_initialized():
        return
    for buf in module.buffers():
        dist.broadcast(buf.data, src=0)


def gather_objects(obj) -> Optional[List]:
    """Every process's ``obj`` (picklable), by rank, on rank 0; None on the others (only rank 0 unpickles
    them all: an all-gather would make every process hold every one). ``[obj]`` for a single process.
    Under NCCL the pickled bytes travel through the process's current GPU, which ``init_distributed``
    set."""
    if not is_initialized():
        return [obj]
    out: Optional[List] = [None] * get_world_size() if get_rank() == 0 else None
    dist.gather_object(obj, out, dst=0)
    return out


def all_gather_objects(obj) -> List:
    """Every process's ``obj`` (picklable, small), by rank, on every process; ``[obj]`` for a single process.
    For the setup's cross-checks (``engine/same_setup``), where each process must know what the others
    hold to refuse together."""
    if not is_initialized():
        return [obj]
    out: List = [None] * get_world_size()
    dist.all_gather_object(out, obj)
    return out


# Text of the errors that a process gets when another one of its group has died: gloo's broken TCP pair
# ("Connection closed by peer ... This is typically caused by a remote worker crashing"), the store's lost
# connection, NCCL's aborted communicator or remote error.
_PEER_LOSS_TEXT = (
    "connection closed by peer", "connection reset by peer", "broken pipe", "remote worker crashing",
    "ncclremoteerror", "remote process exited", "communicator was aborted", "nccl communicator was aborted",
)


# How long a process other than rank 0 waits, at a setup error, for rank 0 to report its own: every process
# meets a shared setup error at the same point of the same code, within moments; a process that waited in
# vain prints its error (rank 0 did not fail alike: a file missing for this process alone).
SETUP_ERROR_WAIT = 10.0


def _setup_error_key(rank: int) -> str:
    # each attempt of a torchrun restart its own keys, should a store outlive the attempt
    return f"maskrcnn/setup_error/{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}/{rank}"


def rank0_setup_error(e: BaseException, message: str, *, wait: Optional[float] = None) -> Optional[str]:
    """Rank 0's message for the setup error it met too, through the process group's store (torchrun's
    agent keeps it while the processes come and go): rank 0 posts ``message`` and gets it back; another
    rank waits up to ``wait`` seconds (``SETUP_ERROR_WAIT``) for rank 0's, "" when none came (rank 0 is
    setting up on, or waits in a collective: the error is this process's alone). None where it is not
    known: one process, the group not joined yet (errors of the config, the same in every process), no
    store to reach, or not a setup error (``mark_own``, ``mark_shared``, a peer's loss, an error of
    another kind than ValueError / KeyError / OSError). ``error_line`` takes the result."""
    if (not is_initialized() or get_world_size() <= 1 or is_peer_loss(e)
            or getattr(e, "maskrcnn_own_error", False) or getattr(e, "maskrcnn_shared_error", False)
            or not isinstance(e, (ValueError, KeyError, OSError))):
        return None
    if get_rank() != 0 and env_world()[2] == 0:
        return None  # another machine's first process prints its error in any case (``error_line``)
    try:
        store = dist.distributed_c10d._get_default_store()
        key = _setup_error_key(0)
        if get_rank() == 0:
            store.set(key, message.encode("utf-8", "surrogateescape"))  # a file name's odd bytes too
            return message
        deadline = time.monotonic() + (SETUP_ERROR_WAIT if wait is None else wait)
        while not store.check([key]):
            if time.monotonic() >= deadline:
                return ""
            time.sleep(0.05)
        return store.get(key).decode("utf-8", "surrogateescape")
    except Exception:  # the store's host is gone (rank 0 held it and ended), or no store: not known
        return None


def mark_own(e: BaseException) -> BaseException:
    """Mark ``e`` as this process's own error (raised in the training loop, on its own share of the data or
    of the memory), which the other processes do not share: ``error_line`` names the rank."""
    e.maskrcnn_own_error = True
    return e


def mark_shared(e: BaseException) -> BaseException:
    """Mark ``e`` as raised by every process together, with one text (a decision all of them take on
    all-reduced values, e.g. a diverging mean loss): ``error_line`` prints it from rank 0 only, even when
    it is also marked ``mark_own``. An exception class can say so for all its errors with the class
    attribute ``maskrcnn_shared_error = True``."""
    e.maskrcnn_shared_error = True
    return e


def error_line(e: BaseException, message: str, *, rank: int, world_size: int,
               local_rank: Optional[int] = None, rank0_message: Optional[str] = None) -> Optional[str]:
    """What process ``rank`` of ``world_size`` prints for the error ``e`` whose text is ``message`` (None:
    nothing). One process: the message. Several (torchrun), so that a message shared by every process is
    printed once and one process's own error still reaches the user:

    - another process's death (``is_peer_loss``): rank 0 says so, with what the backend said of the peer
      (its address) and where its error is, if it printed one (``peer_loss_line``); the others say nothing;
    - an error every process raises together (``mark_shared``, checked before "own"): rank 0 only;
    - an error of the setup that every process of a machine meets alike (a ValueError, KeyError or OSError
      before the training loop: the same config, the same disk): rank 0, and the first process of each
      other machine (``local_rank`` 0, torchrun's LOCAL_RANK; None: not known) prefixed ``rank N:`` -- a
      file missing on another node's disk is then printed by that node. On one machine rank 0 is the only
      local rank 0: once. Another process prints it too when rank 0 did not report the same message
      (``rank0_message``, from ``rank0_setup_error``: "" rank 0 reported none, a text its own; None
      unknown): an error of its own setup alone (a file missing for it only, a limit it alone hit) was
      printed by nobody;
    - this process's own error (``mark_own``, or a RuntimeError / MemoryError of the setup, e.g. its GPU):
      every rank, the others prefixed ``rank N:``.
    """
    if world_size <= 1:
        return message
    if is_peer_loss(e):
        return peer_loss_line(e) if rank == 0 else None
    if rank == 0:
        return message
    if getattr(e, "maskrcnn_shared_error", False):
        return None
    own = getattr(e, "maskrcnn_own_error", False) or not isinstance(e, (ValueError, KeyError, OSError))
    not_rank0s = rank0_message is not None and rank0_message != message
    return f"rank {rank}: {message}" if own or local_rank == 0 or not_rank0s else None


# the peer's address in gloo's texts: "Connection closed by peer [10.0.0.2]:41235", "Read error
# [10.0.0.2]:41235: Connection reset by peer"
_PEER_ADDRESS = re.compile(r"\[([0-9A-Fa-f.:]+)\]:(\d+)")


def peer_loss_line(e: BaseException) -> str:
    """Rank 0's line for the loss of another process: the peer's address where the backend's text names
    it, and where that process's error is: above when it printed one on this console, on its own
    machine's console when it ran there, none when it was killed (by SIGKILL, the out-of-memory killer:
    torchrun's report names its exit status)."""
    match = _PEER_ADDRESS.search(str(e))
    peer = f" (the connection to {match.group(1)}:{match.group(2)} was lost)" if match else ""
    return (f"another process stopped{peer}; its error, if it printed one, is above or on its machine's "
            "console; none if it was killed (torchrun's report names its exit status)")


def is_peer_loss(e: BaseException) -> bool:
    """Whether ``e`` says that another process of the group stopped (not this process's own fault)."""
    network = getattr(dist, "DistNetworkError", None)
    if network is not None and isinstance(e, network):
        return True
    text = str(e).lower()
    return isinstance(e, RuntimeError) and any(t in text for t in _PEER_LOSS_TEXT)
