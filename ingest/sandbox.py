"""Parse untrusted files in a child process with a wall-clock timeout and an address-space budget.

Why a child process: pypdf and friends can loop for minutes, allocate gigabytes or (in C extensions)
crash on hostile input; none of that may reach the server process. Children come from a
``forkserver`` that has ``ingest.loaders`` preloaded, so a call costs a fork, not an interpreter start,
and no child is ever forked from a process that runs torch threads.

One child per file (no reuse): a parser that hit a limit may leave its process in any state, and the
rlimit must be fresh per file. The input travels through a temp file, the result back through a pipe
as msgpack-encoded ``ParsedDocument | ParseFailure``. ``parse_untrusted`` is what ingest calls: it keeps small
text and Markdown files (our own linear-time code) in the calling thread, where the fork would cost more.

Children do not re-import the parent's ``__main__`` (multiprocessing would re-run a server's launcher
script, or fail outright when the parent runs from stdin): the target lives in this module, so the
preparation data sent to the child simply leaves the main module out (``_MainlessPopen``).
"""

from __future__ import annotations

import contextlib
import io
import math
import multiprocessing
import os
import resource
import signal
import tempfile
import threading
from collections.abc import Callable
from multiprocessing import context as mp_context
from multiprocessing import forkserver, popen_forkserver, reduction, spawn, util
from multiprocessing.connection import Connection
from multiprocessing.context import ForkServerContext, ForkServerProcess
from typing import Any

import msgspec

from engine.errors import InvalidInput
from ingest.parsed import ParsedDocument, ParseFailure, ParseResult

_PRELOAD = ["engine", "ingest.loaders", "ingest.sandbox"]
_MAX_RESULT_BYTES = 512 * 1024 * 1024
_KILL_GRACE_S = 5.0
_ENCODER = msgspec.msgpack.Encoder()
_DECODER: msgspec.msgpack.Decoder[ParseResult] = msgspec.msgpack.Decoder(ParseResult)

_context_lock = threading.Lock()
_context: ForkServerContext | None = None


def timeout_reason(timeout_s: float) -> str:
    return f"parsing took longer than {timeout_s:g} s; the file is too complex or malformed"


def memory_reason(memory_mb: int) -> str:
    return f"parsing needed more than {memory_mb} MB of memory; the file is too large or malformed"


def _get_context() -> ForkServerContext:
    global _context
    with _context_lock:
        if _context is None:
            context = multiprocessing.get_context("forkserver")
            assert isinstance(context, ForkServerContext)
            # Only takes effect if this call starts the forkserver (it is process-wide and lazy).
            context.set_forkserver_preload(_PRELOAD)
            _context = context
        return _context


class _MainlessPopen(popen_forkserver.Popen):
    """``popen_forkserver.Popen`` (CPython 3.11) minus the parent's ``__main__`` in the preparation data."""

    def _launch(self, process_obj: Any) -> None:
        prep_data = spawn.get_preparation_data(process_obj._name)
        prep_data.pop("init_main_from_path", None)
        prep_data.pop("init_main_from_name", None)
        buf = io.BytesIO()
        stdlib_context: Any = mp_context  # private helpers that typeshed does not declare
        stdlib_util: Any = util
        stdlib_context.set_spawning_popen(self)
        try:
            reduction.dump(prep_data, buf)
            reduction.dump(process_obj, buf)
        finally:
            stdlib_context.set_spawning_popen(None)
        fds: list[int] = getattr(self, "_fds")  # noqa: B009 - set by popen_fork.Popen.__init__
        self.sentinel, w = forkserver.connect_to_new_process(fds)
        parent_w = os.dup(w)  # the child watches this end to notice that we died
        self.finalizer = util.Finalize(self, stdlib_util.close_fds, (parent_w, self.sentinel))
        with open(w, "wb", closefd=True) as pipe:
            pipe.write(buf.getbuffer())
        self.pid = forkserver.read_signed(self.sentinel)


class _ParseProcess(ForkServerProcess):
    @staticmethod
    def _Popen(process_obj: Any) -> Any:
        return _MainlessPopen(process_obj)


def _address_space_bytes() -> int:
    """Current virtual size of this process (the interpreter and preloaded modules count against RLIMIT_AS)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


PARSE_NICENESS = 10  # parsing is background work: interactive requests (search, chat) get the CPU first


def _apply_limits(memory_mb: int, timeout_s: float) -> None:
    os.nice(PARSE_NICENESS)
    limit = _address_space_bytes() + memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    # Backstop if the parent dies before it can kill us: CPU seconds beyond the wall budget end the child.
    cpu = math.ceil(timeout_s) + 5
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 5))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _parse_job(path: str, file_type: str) -> ParsedDocument:
    from ingest.loaders import parse_document  # preloaded in the forkserver: a dict lookup here

    with open(path, "rb") as handle:
        data = handle.read()
    return parse_document(data, file_type)


ParseJob = Callable[[str, str], ParsedDocument]


def _child_main(
    job: ParseJob, path: str, file_type: str, memory_mb: int, timeout_s: float, conn: Connection
) -> None:
    """Entry point in the child: apply budgets, parse, send one encoded result, exit."""
    result: ParseResult
    try:
        _apply_limits(memory_mb, timeout_s)
        result = job(path, file_type)
    except InvalidInput as exc:
        result = ParseFailure(exc.message)
    except MemoryError:
        result = ParseFailure(memory_reason(memory_mb))
    except RecursionError:
        result = ParseFailure("the file is nested too deeply to read")
    except Exception:
        result = ParseFailure("the file could not be read (the parser failed on malformed content)")
    try:
        payload = _ENCODER.encode(result)
    except MemoryError:
        payload = _ENCODER.encode(ParseFailure(memory_reason(memory_mb)))
    conn.send_bytes(payload)
    conn.close()


def _exit_reason(exitcode: int | None, memory_mb: int, timeout_s: float) -> str:
    if exitcode is not None and exitcode < 0:
        signum = -exitcode
        if signum == signal.SIGXCPU:
            return timeout_reason(timeout_s)
        if signum == signal.SIGKILL:
            return memory_reason(memory_mb)  # not our kill: the kernel's OOM killer is the usual sender
        name = signal.Signals(signum).name if signum in signal.Signals._value2member_map_ else str(signum)
        return f"the parser crashed on this file (signal {name}); the file is probably malformed"
    return "the parser stopped unexpectedly on this file; the file is probably malformed"


def _await_result(
    proc: multiprocessing.process.BaseProcess, conn: Connection, memory_mb: int, timeout_s: float
) -> ParseResult:
    if not conn.poll(timeout_s):
        _kill(proc)
        return ParseFailure(timeout_reason(timeout_s))
    try:
        payload = conn.recv_bytes(_MAX_RESULT_BYTES)
    except EOFError:  # the child died without a result
        proc.join(_KILL_GRACE_S)
        return ParseFailure(_exit_reason(proc.exitcode, memory_mb, timeout_s))
    except OSError:
        _kill(proc)
        return ParseFailure("the file produced too much text to process")
    try:
        return _DECODER.decode(payload)
    except msgspec.DecodeError:
        return ParseFailure("the parser returned an unreadable result; the file is probably malformed")


def _kill(proc: multiprocessing.process.BaseProcess) -> None:
    if proc.is_alive():
        proc.kill()
    proc.join(_KILL_GRACE_S)


# Plain text and Markdown are parsed by our own code, linear in the input (tests/ingest/test_loaders.py times
# pathological 2 MB files in-process), with no third-party parser under it. For a small one the budgeted child costs
# far more than the parse: ~12 ms of CPU per file (fork, pipe, exit) against ~0.06 ms for a 1.5 kB SciFact abstract,
# and on 2 cores that CPU comes out of the embedder's (500 SciFact files: 33 vs 40 s of CPU, 17 vs 20 s to drain).
IN_PROCESS_TYPES = frozenset({"txt", "md"})
IN_PROCESS_MAX_BYTES = 256 * 1024


def parse_untrusted(data: bytes, file_type: str, *, timeout_s: float, memory_mb: int) -> ParseResult:
    """Parse an uploaded file: small text and Markdown files in the calling thread, everything else in the sandbox.

    Same contract as ``parse_in_sandbox`` (blocking; a readable ``ParseFailure`` instead of an exception).
    """
    if file_type not in IN_PROCESS_TYPES or len(data) > IN_PROCESS_MAX_BYTES:
        return parse_in_sandbox(data, file_type, timeout_s=timeout_s, memory_mb=memory_mb)
    from ingest.loaders import parse_document

    try:
        return parse_document(data, file_type)
    except InvalidInput as exc:
        return ParseFailure(exc.message)


def parse_in_sandbox(data: bytes, file_type: str, *, timeout_s: float, memory_mb: int) -> ParseResult:
    """Parse ``data`` in a fresh child process with a wall-clock and an address-space budget.

    Thread-safe; blocks the calling thread (call it from a worker thread, not the event loop).

    Args:
        data: the file's bytes.
        file_type: a type returned by ``ingest.loaders.detect_file_type``.
        timeout_s: wall-clock budget; the child is killed (SIGKILL) when it is exceeded.
        memory_mb: address space the parser may add on top of the preloaded interpreter (RLIMIT_AS).

    Returns:
        The parsed document, or a ``ParseFailure`` whose reason is readable by the uploader.
    """
    return run_sandboxed(_parse_job, data, file_type, timeout_s=timeout_s, memory_mb=memory_mb)


def run_sandboxed(job: ParseJob, data: bytes, file_type: str, *, timeout_s: float, memory_mb: int) -> ParseResult:
    """Run ``job(path_of_data, file_type)`` in a budgeted child; ``job`` must be a module-level function.

    ``parse_in_sandbox`` is this with the real parser; tests pass jobs that crash or hog memory on purpose.
    """
    context = _get_context()
    fd, path = tempfile.mkstemp(prefix="ragline-parse-")
    receiver, sender = context.Pipe(duplex=False)
    proc = _ParseProcess(
        target=_child_main, args=(job, path, file_type, memory_mb, timeout_s, sender), daemon=True,
        name="ragline-parse",
    )
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        proc.start()
        sender.close()  # the child holds the only write end now, so its death reads as EOF
        return _await_result(proc, receiver, memory_mb, timeout_s)
    finally:
        receiver.close()
        sender.close()
        _kill(proc)
        with contextlib.suppress(ValueError):
            proc.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
