"""Starting the receiver's child processes (the spool writer, the applier): `python -m MODULE`,
each given its ends of the pipes by file descriptor and its arguments pickled on its standard
input. Not multiprocessing's spawn: that imports the parent's main module again in every child,
which for `workbench listen` is the whole command line interface (over a second a child, and
the memory it holds for as long as the child lives)."""

from __future__ import annotations

import pickle
import signal
import subprocess
import sys
from collections.abc import Sequence
from multiprocessing.connection import Connection as Pipe
from typing import IO, Any, cast

STOP = b"stop"  # to a child, on its pipe: finish what you were given, then end
READY = b"ready"  # from a child, on its pipe: started
START_TIMEOUT_S = 60


def launch(module: str, arguments: tuple[Any, ...], pipes: Sequence[Pipe],
           shared: Sequence[int] = ()) -> subprocess.Popen[bytes]:
    """Start `module` with `arguments`; the child's ends of `pipes` are closed here once it has
    them. `shared`: descriptors the child gets after those of `pipes`, kept open here."""
    fds = [pipe.fileno() for pipe in pipes] + list(shared)
    process = subprocess.Popen([sys.executable, "-m", module, *map(str, fds)], stdin=subprocess.PIPE, pass_fds=fds)
    stdin = cast(IO[bytes], process.stdin)
    try:
        stdin.write(pickle.dumps(arguments, protocol=pickle.HIGHEST_PROTOCOL))
    finally:
        stdin.close()
        for pipe in pipes:
            pipe.close()
    return process


def received() -> tuple[tuple[Any, ...], list[Pipe]]:
    """In the child: its arguments and its ends of the pipes, as `launch` passed them."""
    arguments: tuple[Any, ...] = pickle.load(sys.stdin.buffer)
    sys.stdin.close()
    return arguments, [Pipe(int(fd)) for fd in sys.argv[1:]]


def ready(pipe: Pipe) -> bool:
    """Whether the child at the other end of `pipe` said it started (False if it ended first)."""
    try:
        return pipe.poll(START_TIMEOUT_S) and pipe.recv_bytes() == READY
    except (EOFError, OSError):
        return False


def tell_to_stop(pipe: Pipe) -> None:
    try:
        pipe.send_bytes(STOP)
    except OSError:
        pass  # already gone


def ignore_stop_signals() -> None:
    """In a child only: a ctrl+c, or a service manager's SIGTERM to the whole group, is for the
    receiver, which stops its children in order (the spool writer first, then the applier once
    it has moved everything); a child ends when told to or when the receiver is gone."""
    for stop_signal in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop_signal, signal.SIG_IGN)


def stop(process: subprocess.Popen[bytes] | None, timeout_s: float) -> bool:
    """Wait for a child told to end; killed if it has not within `timeout_s`. False if it had to be."""
    if process is None:
        return True
    try:
        process.wait(timeout=timeout_s)
        return True
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return False
