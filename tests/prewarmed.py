"""The suite's `python -m zoo` processes, forked from one that has already imported torch and coremltools.

Most of what a short `zoo export tiny` or `zoo verify --execute` costs is importing those two (about
4 s of CPU on this class of machine, measured 2026-12-04: `python -c "import torch, coremltools"`),
and the suite starts a few hundred such processes. A server per test worker imports them once; each
command is then a fork of it that behaves as `python -m zoo ARGS` started in ``cwd`` with ``env``:
the environment replaced, ``sys.path`` rebuilt as the interpreter builds it (the working directory,
then ``PYTHONPATH``, then the installation's own), stdin from /dev/null, stdout and stderr into the
caller's files, fresh ``sys.stdout``/``sys.stderr`` objects, zoo and every plugin imported by the
command itself (nothing of zoo is preloaded: an environment read at import is read from the
command's), then the interpreter's own shutdown (non-daemon threads joined, atexit handlers run,
streams flushed). Its exit status is the one ``subprocess`` would give (a negative number for a
signal).

What it cannot be is a fresh interpreter. A command that needs one runs fresh by itself: one with a
``sitecustomize`` on its ``PYTHONPATH`` (interpreter start-up runs it; tests/coreml_seam is one), or
whose values for the variables torch and coremltools read when imported differ from the server's
(IMPORT_TIME_ENV). A test about what a process imports (``zoo --help`` never imports torch) or about
import-time warnings asks for one (``zoo(..., fresh=True)``) or starts its
own ``subprocess``. ``ZOO_TEST_FRESH=1`` runs every command fresh (the server is then never started).
tests/core/test_prewarmed.py holds the server to that promise against fresh processes.

    server: python tests/prewarmed.py SOCKET     (started by ``run`` on first use, one per process)
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path

#: imported once by the server: the heavy third-party modules every exporting command imports
#: (numba: the MIL interpreter's compiled loops; the server also sets up its compiler, see serve)
PRELOAD = ("numpy", "torch", "coremltools", "numba")
#: modules PRELOAD pulls in that read the environment when imported (``HF_HUB_OFFLINE``, ``HF_HOME``):
#: dropped again, so that a command imports them itself under its own environment (coremltools only
#: asks whether transformers is installed). Found by test_weights' offline-hub test, which took the
#: online path for 23 s while these stayed loaded.
DROP = ("huggingface_hub", "transformers")
#: environment variables read when torch and coremltools are imported (thread pools, tqdm): a
#: command whose values differ from the server's runs in a fresh process instead
IMPORT_TIME_ENV = ("OMP_", "MKL_", "KMP_", "TORCH", "PYTORCH", "TQDM_", "NUMBA_")
_HEADER = struct.Struct("!I")
_STATUS = struct.Struct("!i")


def _read_request(conn: socket.socket) -> tuple[dict, list[int]]:
    data, fds, _, _ = socket.recv_fds(conn, 1 << 16, 2)
    while len(data) < _HEADER.size or len(data) < _HEADER.size + _HEADER.unpack_from(data)[0]:
        more = conn.recv(1 << 16)
        if not more:
            raise EOFError("the client went away mid-request")
        data += more
    (size,) = _HEADER.unpack_from(data)
    return json.loads(data[_HEADER.size : _HEADER.size + size]), fds


def _command(request: dict, fds: list[int]) -> None:
    """In the forked child: become ``python -m zoo ARGS`` and exit as it would."""
    import io
    import runpy
    import traceback

    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(fds[0], 1)
    os.dup2(fds[1], 2)
    for fd in (null, *fds):
        os.close(fd)
    encoding = request["encoding"]
    sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False), encoding=encoding)
    sys.stdout = io.TextIOWrapper(io.BufferedWriter(io.FileIO(1, "w", closefd=False)), encoding=encoding)
    sys.stderr = io.TextIOWrapper(
        io.BufferedWriter(io.FileIO(2, "w", closefd=False)),
        encoding=encoding,
        errors="backslashreplace",
        line_buffering=True,
    )
    sys.__stdin__, sys.__stdout__, sys.__stderr__ = sys.stdin, sys.stdout, sys.stderr
    extra = [p for p in request["env"].get("PYTHONPATH", "").split(os.pathsep) if p]
    sys.path[:] = [os.getcwd(), *extra, *request["base_path"]]
    sys.argv = ["-m", *request["args"]]
    code = 0
    try:
        runpy.run_module("zoo", run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        if exc.code is None:
            code = 0
        elif isinstance(exc.code, int):
            code = exc.code
        else:
            print(exc.code, file=sys.stderr)
            code = 1
    except BaseException:  # noqa: BLE001 - what the interpreter does with an uncaught exception
        traceback.print_exc()
        code = 1
    try:
        threading._shutdown()  # type: ignore[attr-defined]  # the interpreter joins non-daemon threads
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001
                pass
        os._exit(code & 0xFF)


def serve(path: str) -> None:
    """Import PRELOAD, then for each request fork a supervisor that forks the command, waits for it
    and sends its exit status back (the server itself never waits and never starts a thread: a
    process that forks stays single-threaded)."""
    import gc
    import importlib
    import signal

    os.environ.setdefault("TQDM_DISABLE", "1")  # as zoo's main sets it before anything imports tqdm
    for name in PRELOAD:
        importlib.import_module(name)
    for name in [m for m in sys.modules if m.split(".")[0] in DROP]:
        del sys.modules[name]
    # numba sets up its CPU target the first time a function is compiled or loaded from its cache
    # (0.25 s): once here, not in every command that runs the interpreter
    sys.modules["numba"].njit(lambda v: v + 1)(1)
    gc.collect()
    gc.freeze()  # the imported objects: a command's collections (coremltools collects after every
    # conversion) no longer walk them, and a fork no longer copies their pages by touching them
    base_path = sys.path[1:]  # without this script's directory: the command's cwd takes its place
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # supervisors are reaped by the kernel
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(16)
    print("ready", flush=True)
    parent = os.getppid()
    listener.settimeout(1.0)
    while True:
        try:
            conn, _ = listener.accept()
        except TimeoutError:
            if os.getppid() != parent:  # the test worker that started us is gone
                return
            continue
        conn.settimeout(None)
        request, fds = _read_request(conn)
        request["base_path"] = base_path
        if os.fork() == 0:  # the supervisor
            listener.close()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            pid = os.fork()
            if pid == 0:
                conn.close()
                _command(request, fds)
            for fd in fds:
                os.close(fd)
            _, status = os.waitpid(pid, 0)
            conn.sendall(_STATUS.pack(os.waitstatus_to_exitcode(status)))
            conn.close()
            os._exit(0)
        for fd in fds:
            os.close(fd)
        conn.close()


class _Server:
    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="zoo-prewarmed-")
        self.path = os.path.join(self.dir, "socket")
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        env.setdefault("TQDM_DISABLE", "1")  # what serve() sets before importing
        self.import_env = _import_time_env(env)
        with open(os.path.join(self.dir, "server.log"), "wb") as log:  # what importing torch and coremltools says
            self.proc = subprocess.Popen(
                [sys.executable, __file__, self.path],
                env=env,
                stdout=subprocess.PIPE,
                stderr=log,
                stdin=subprocess.DEVNULL,
            )
        line = self.proc.stdout.readline() if self.proc.stdout else b""
        if line.strip() != b"ready":
            log = Path(self.dir, "server.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"the prewarmed zoo server did not start (exit {self.proc.poll()}):\n{log}")

    def run(self, args: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, bytes, bytes]:
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            request = json.dumps(
                {"args": list(args), "cwd": str(cwd), "env": dict(env), "encoding": sys.getfilesystemencoding()}
            ).encode()
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
                conn.connect(self.path)
                socket.send_fds(conn, [_HEADER.pack(len(request)) + request], [out.fileno(), err.fileno()])
                status = b""
                while len(status) < _STATUS.size:
                    more = conn.recv(_STATUS.size - len(status))
                    if not more:
                        raise RuntimeError("the prewarmed zoo server dropped a command without its exit status")
                    status += more
            out.seek(0)
            err.seek(0)
            return _STATUS.unpack(status)[0], out.read(), err.read()


_server: _Server | None = None
_starting = threading.Lock()


def _import_time_env(env: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k.startswith(IMPORT_TIME_ENV)}


def _startup_files(env: Mapping[str, str]) -> list[str]:
    """The ``sitecustomize.py`` files on the command's PYTHONPATH: interpreter start-up runs them, a fork
    of the server would not."""
    return [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and Path(p, "sitecustomize.py").exists()]


def run(args: list[str], cwd: Path, env: dict[str, str], fresh: bool = False) -> subprocess.CompletedProcess:
    """``subprocess.run([python, -m, zoo, *args], cwd=cwd, env=env, capture_output=True, text=True)``,
    forked from the prewarmed server; in a fresh process when asked (``fresh``, ZOO_TEST_FRESH=1) or
    when a fork could not be that process (a sitecustomize on its PYTHONPATH, other values for the
    variables torch and coremltools read when imported)."""
    global _server
    argv = [sys.executable, "-m", "zoo", *args]
    fresh = fresh or bool(os.environ.get("ZOO_TEST_FRESH")) or bool(_startup_files(env))
    if not fresh:
        with _starting:  # commands may come from several threads at once (test_export's eight exports)
            if _server is None or _server.proc.poll() is not None:
                _server = _Server()
        fresh = _import_time_env(env) != _server.import_env
    if fresh:
        return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    assert _server is not None
    code, out, err = _server.run(args, cwd, env)
    return subprocess.CompletedProcess(argv, code, out.decode(errors="replace"), err.decode(errors="replace"))


@atexit.register
def _stop() -> None:
    if _server is not None:
        _server.proc.kill()
        _server.proc.wait()
        shutil.rmtree(_server.dir, ignore_errors=True)


if __name__ == "__main__":
    serve(sys.argv[1])
