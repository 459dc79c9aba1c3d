"""A warm Jupyter kernel for the notebook stages: fork a process that has imported the libraries.

Why: every DVC stage executes one notebook in a fresh kernel, and a fresh kernel
spends ~6 s importing torch, transformers, timm, peft, scikit-learn and pandas
before its first line of work. The pipeline runs ~30 notebooks, so on 2 cores
imports alone cost minutes (more than the whole smoke profile's training).

How: the kernel spec ``mmscale-warm`` starts this module with ``-f CONNECTION_FILE``
(the *client*; ``RUN_THIS_MODULE``: ``python -m`` without the working directory on
``sys.path``). The client asks a *zygote* (a server on a
Linux abstract socket, one per Python executable and user) to fork a child that
becomes an ordinary ipykernel: the child takes the client's stdin/stdout/stderr,
working directory, environment (its PYTHONPATH on ``sys.path``) and arguments, drops every ``mmscale_core``
module (project code is imported afresh from the notebook's working directory,
exactly as in a cold kernel), reseeds Python's, NumPy's and torch's global
generators from the OS (as a fresh process does) and runs ``ipykernel``. Nothing
of a notebook's state reaches the next: each gets its own fork of a zygote that
has only imported modules, never run a notebook or a torch op.

The same fork serves ``mmscale notebook`` itself (``run_forked``): the command asks for a child
that runs the stage's papermill call with the command's streams, directory, environment and
options, so the ~1 s of importing papermill, nbformat and jupyter_client is paid once per zygote,
not once per stage; with no zygote the command runs in its own process, as before.

The client stays the process Jupyter manages: it forwards SIGINT/SIGTERM to the
child and exits with the child's exit code; if the client is killed, the zygote
kills the child. The first client starts the zygote (it imports the libraries
in a few seconds, then serves); the zygote exits after ``MMSCALE_WARM_KERNEL_IDLE``
seconds (default 120) without work. Anything unusual (not Linux, the zygote
cannot start or answer, CUDA initialised by an import) falls back to the plain
kernel, so the warm kernel changes speed, never results.
``MMSCALE_WARM_KERNEL=0`` turns it off.
"""

from __future__ import annotations

import argparse
import atexit
import hashlib
import importlib
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

KERNEL_NAME = "mmscale-warm"
PROTOCOL = 3  # 2: the kernel takes its client's PYTHONPATH; 3: a request has a role (a kernel or a call)
IDLE_S = 120.0
CONNECT_TIMEOUT_S = 60.0
# What a notebook stage imports; an entry that fails to import is skipped. torch._inductor.config:
# torch.use_deterministic_algorithms (every training run) imports it, with torch._dynamo: ~2 s a run.
PRELOAD = (
    "numpy", "pandas", "pyarrow.parquet", "scipy.stats", "yaml", "tqdm", "PIL.Image",
    "torch", "torch._inductor.config", "safetensors.torch", "mmscale_core.models._torchvision_compat:ensure_torchvision_importable",
    "timm", "timm.data", "transformers", "transformers.models.bert.modeling_bert", "peft", "accelerate",
    "sklearn.isotonic", "sklearn.metrics", "sklearn.linear_model", "statsmodels.api", "krippendorff",
    "matplotlib.pyplot", "seaborn", "ipykernel.kernelapp",
    "mmscale_core.notebook_runner:import_papermill",  # for `mmscale notebook` itself (``run_forked``)
)
# matplotlib reads MPLBACKEND when imported: the zygote imports it with ipykernel's inline backend
# and each child re-applies its own choice before any figure exists (else notebooks lose figures)
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"


def enabled() -> bool:
    return os.environ.get("MMSCALE_WARM_KERNEL", "1") != "0" and sys.platform.startswith("linux")


def address() -> str:
    """The zygote's abstract socket name: one per Python executable, user and protocol."""
    override = os.environ.get("MMSCALE_WARM_KERNEL_ADDRESS")
    if override:
        return override
    key = hashlib.sha1(f"{sys.executable}|{sys.prefix}|{PROTOCOL}".encode()).hexdigest()[:16]
    return f"mmscale-warm-kernel-{os.getuid()}-{key}"


def _abstract(name: str) -> str:
    return "\0" + name


# --------------------------------------------------------------------------- kernel spec

_SPEC_DIR: Path | None = None
# `python -m mmscale_core.warm_kernel`, but without the working directory first on sys.path (the
# client runs in the notebook's directory, the zygote in its starter's): a directory holding another
# `mmscale_core` (a stand-in, an older checkout) must not decide which client or zygote runs; the
# kernel itself still imports project code from the notebook's directory (``_become_kernel``).
RUN_THIS_MODULE = ("import runpy, sys\n"
                   "if sys.path[:1] == ['']:\n    del sys.path[0]\n"
                   "runpy.run_module('mmscale_core.warm_kernel', run_name='__main__', alter_sys=True)\n")


def kernel_name() -> str:
    """Name of the kernel papermill should start: the warm kernel when enabled, else ``python3``.

    Writes the ``mmscale-warm`` spec into a temporary Jupyter data directory and puts it first
    on ``JUPYTER_PATH`` (for this process and its children), removed at exit.
    """
    global _SPEC_DIR
    if not enabled():
        return "python3"
    if _SPEC_DIR is None:
        root = Path(tempfile.mkdtemp(prefix="mmscale-kernelspec-"))
        spec = root / "kernels" / KERNEL_NAME
        spec.mkdir(parents=True)
        (spec / "kernel.json").write_text(json.dumps({
            "argv": [sys.executable, "-c", RUN_THIS_MODULE, "-f", "{connection_file}"],
            "display_name": "Python 3 (mmscale, warm)",
            "language": "python",
            "metadata": {"debugger": False},
        }))
        atexit.register(lambda: __import__("shutil").rmtree(root, ignore_errors=True))
        _SPEC_DIR = root
        os.environ["JUPYTER_PATH"] = os.pathsep.join(filter(None, [str(root), os.environ.get("JUPYTER_PATH")]))
    return KERNEL_NAME


# --------------------------------------------------------------------------- wire format

def _send_json(sock: socket.socket, obj: dict) -> None:
    data = json.dumps(obj).encode()
    sock.sendall(struct.pack("!I", len(data)) + data)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError("warm kernel: connection closed")
        buf += chunk
    return buf


def _recv_json(sock: socket.socket) -> dict:
    (n,) = struct.unpack("!I", _recv_exact(sock, 4))
    return json.loads(_recv_exact(sock, n))


# --------------------------------------------------------------------------- client

def _connect(addr: str) -> socket.socket | None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(_abstract(addr))
        return sock
    except OSError:
        sock.close()
        return None


def start_zygote(addr: str, idle_s: float | None = None) -> subprocess.Popen:
    idle = idle_s if idle_s is not None else float(os.environ.get("MMSCALE_WARM_KERNEL_IDLE", IDLE_S))
    return subprocess.Popen(
        [sys.executable, "-c", RUN_THIS_MODULE, "serve", "--address", addr, "--idle", str(idle)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True, cwd=os.getcwd(),
    )


def connect_or_start(addr: str, timeout_s: float = 10.0) -> socket.socket | None:
    """A connection to the zygote, starting one when none answers (None if none comes up)."""
    sock = _connect(addr)
    if sock is not None:
        return sock
    proc = start_zygote(addr)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        sock = _connect(addr)
        if sock is not None:
            return sock
        if proc.poll() is not None:  # lost a race to another zygote (address in use): it will answer
            proc = None
            sock = _connect(addr)
            if sock is not None:
                return sock
        time.sleep(0.02)
    return None


def _request_fork(request: dict) -> tuple[socket.socket, int] | None:
    """Ask the zygote (started if none answers) for a child that serves ``request`` with this
    process's stdin, stdout, stderr, working directory and environment; None if none comes."""
    sock = connect_or_start(address()) if enabled() else None
    if sock is None:
        return None
    child = None
    try:
        # the zygote may still be importing
        sock.settimeout(float(os.environ.get("MMSCALE_WARM_KERNEL_CONNECT_TIMEOUT", CONNECT_TIMEOUT_S)))
        payload = json.dumps({"protocol": PROTOCOL, **request, "cwd": os.getcwd(),
                              "env": dict(os.environ)}).encode()
        socket.send_fds(sock, [struct.pack("!I", len(payload))], [0, 1, 2])
        sock.sendall(payload)
        child = _recv_json(sock).get("pid")
    except (OSError, EOFError, ValueError):
        child = None
    if not child:
        sock.close()
        return None
    return sock, child


def _wait_for_child(sock: socket.socket, child: int) -> int:
    """Stand in for the forked child: forward signals to it, end it if our parent dies, return its exit code."""

    def forward(signum, _frame):
        try:
            os.kill(child, signum)
        except ProcessLookupError:
            pass

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(signum, forward)
    # like a cold kernel's parent poller: if whoever started us (papermill, DVC) dies, end the child
    parent = os.getppid()
    while True:
        ready, _, _ = select.select([sock], [], [], 1.0)
        if not ready:
            if os.getppid() != parent:
                forward(signal.SIGKILL, None)
                return 1
            continue
        try:
            return int(_recv_json(sock)["exit"])
        except (OSError, EOFError, ValueError, KeyError):
            return 1


def run_client(kernel_argv: list[str]) -> int:
    """Be the kernel process Jupyter started: a forked warm kernel, or a plain one as fallback."""
    forked = _request_fork({"role": "kernel", "argv": kernel_argv})
    if forked is None:  # fall back to the ordinary kernel, in this process
        os.execv(sys.executable, [sys.executable, "-m", "ipykernel_launcher", *kernel_argv])
    return _wait_for_child(*forked)


def run_forked(target: str, options: dict) -> int | None:
    """Call ``target(options)`` in a fork of the zygote; its exit code, or None when no zygote serves.

    ``target`` is ``"module:function"`` of project code, imported afresh in the child from the
    caller's directory, as a kernel imports it; the function takes the JSON ``options`` and returns
    an exit code. Why: ``mmscale notebook`` (every DVC stage) spent ~1 s importing papermill,
    nbformat and jupyter_client before its kernel started; the zygote has them imported. The child
    is what this process would have been (same streams, directory, environment, arguments), so a
    caller runs ``target`` itself on None and gets the same result either way.
    """
    forked = _request_fork({"role": "call", "target": target, "options": options})
    return None if forked is None else _wait_for_child(*forked)


# --------------------------------------------------------------------------- zygote

def preload_names() -> tuple[str, ...]:
    """``PRELOAD``, or the comma-separated ``MMSCALE_WARM_KERNEL_PRELOAD`` (tests use a short list)."""
    override = os.environ.get("MMSCALE_WARM_KERNEL_PRELOAD")
    return tuple(filter(None, override.split(","))) if override is not None else PRELOAD


def preload(names: tuple[str, ...] | None = None) -> list[str]:
    """Import what the notebooks import; returns the names that failed (skipped)."""
    failed = []
    names = preload_names() if names is None else names
    for entry in names:
        module, _, call = entry.partition(":")
        try:
            mod = importlib.import_module(module)
            if call:
                getattr(mod, call)()
        except Exception:  # noqa: BLE001 - an optional library: the kernel imports it itself if needed
            failed.append(entry)
    return failed


def _cuda_initialised() -> bool:
    torch = sys.modules.get("torch")
    return bool(torch is not None and torch.cuda.is_initialized())


_LAUNCH_DIR = ""
_LAUNCH_PYTHONPATH: list[str] = []


def _pythonpath(env) -> list[str]:
    return [os.path.abspath(p) for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]


def _same_user(conn: socket.socket) -> bool:
    """Abstract sockets have no file permissions: only serve processes of this user."""
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid == os.getuid()


def serve(addr: str, idle_s: float = IDLE_S, names: tuple[str, ...] | None = None) -> int:
    """Bind, import, then fork one kernel per request until idle for ``idle_s`` seconds."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(_abstract(addr))  # first, so concurrent clients find this zygote, not start another
    except OSError:
        return 0  # another zygote serves this address
    listener.listen(64)
    # `python -m` put the launching directory first on sys.path: a child drops it (and IPython adds
    # its own working directory), or project code would come from wherever the zygote was started
    global _LAUNCH_DIR, _LAUNCH_PYTHONPATH
    _LAUNCH_DIR = os.getcwd()
    _LAUNCH_PYTHONPATH = _pythonpath(os.environ)
    os.chdir("/")  # hold no directory of a project (children chdir to their own)
    os.environ.setdefault("MPLBACKEND", INLINE_BACKEND)
    preload(names)
    if _cuda_initialised():  # a forked child could not use CUDA: serve nothing, clients fall back
        return 0
    children: dict[int, socket.socket] = {}
    last_active = time.monotonic()
    while True:
        timeout = 0.05 if children else max(0.0, idle_s - (time.monotonic() - last_active))
        if not children and timeout == 0.0:
            return 0
        readable, _, _ = select.select([listener, *children.values()], [], [], timeout)
        for pid, conn in list(children.items()):  # report every finished child to its client
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                try:
                    _send_json(conn, {"exit": os.waitstatus_to_exitcode(status)})
                except OSError:
                    pass
                conn.close()
                del children[pid]
                last_active = time.monotonic()
        for sock in readable:
            if sock is listener:
                conn, _ = listener.accept()
                pid = _fork_child(conn, listener, children) if _same_user(conn) else None
                if pid:
                    children[pid] = conn
                    last_active = time.monotonic()
                else:
                    conn.close()
            elif sock.fileno() != -1 and sock in children.values():
                # a client never writes after its request: readable means it went away -> end its kernel
                if not sock.recv(1):
                    pid = next(p for p, c in children.items() if c is sock)
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass


def _fork_child(conn: socket.socket, listener: socket.socket, children: dict) -> int | None:
    try:
        conn.settimeout(10)
        header, fds, _, _ = socket.recv_fds(conn, 4, 3)
        if len(header) != 4 or len(fds) != 3:
            raise ValueError("bad request")
        (n,) = struct.unpack("!I", header)
        request = json.loads(_recv_exact(conn, n))
        if request.get("protocol") != PROTOCOL:
            raise ValueError("protocol mismatch")
        if request.get("role") not in ("kernel", "call"):
            raise ValueError("unknown role")
        conn.settimeout(None)
    except (OSError, EOFError, ValueError, struct.error):
        return None
    pid = os.fork()
    if pid == 0:  # the child: becomes the kernel (or runs the call) and never returns
        code = 1
        try:
            listener.close()
            for other in children.values():
                other.close()
            conn.close()
            _adopt_client(request, fds)
            code = _run_call(request) if request.get("role") == "call" else _become_kernel(request)
        finally:
            os._exit(code)
    for fd in fds:
        os.close(fd)
    try:
        _send_json(conn, {"pid": pid})
    except OSError:
        os.kill(pid, signal.SIGKILL)
    return pid


def _adopt_client(request: dict, fds: list[int]) -> None:
    """Make this fresh child the process its client would have been: streams, directory, environment,
    ``sys.path``, project code not yet imported, unseeded generators."""
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    sys.stdin = open(0, closefd=False)  # noqa: SIM115 - the inherited descriptors, rebound
    sys.stdout = open(1, "w", closefd=False, buffering=1)  # noqa: SIM115
    sys.stderr = open(2, "w", closefd=False, buffering=1)  # noqa: SIM115
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    if "matplotlib" in sys.modules:  # what ipykernel would select before importing matplotlib
        sys.modules["matplotlib"].rcParams["backend"] = os.environ.get("MPLBACKEND") or INLINE_BACKEND
    for name in [m for m in sys.modules if m == "mmscale_core" or m.startswith("mmscale_core.")]:
        del sys.modules[name]  # project code comes from the notebook's directory, as in a cold kernel
    sys.path[:] = [p for p in sys.path if p not in ("", "/", _LAUNCH_DIR, *_LAUNCH_PYTHONPATH)]  # IPython puts '' back
    # PYTHONPATH is read at interpreter start: the zygote's was its starter's (another checkout, maybe); the
    # kernel's is its client's, after the working directory, as `python -m ipykernel_launcher` would have it
    sys.path[:0] = [p for p in dict.fromkeys([request["cwd"], *_pythonpath(request["env"])]) if p not in sys.path]
    sys.path_importer_cache.clear()
    importlib.invalidate_caches()
    import random

    random.seed()  # fresh entropy for every global generator, as a new process gets
    if "numpy" in sys.modules:
        sys.modules["numpy"].random.seed()
    if "torch" in sys.modules:
        sys.modules["torch"].seed()


def _run_call(request: dict) -> int:
    """A ``run_forked`` child: call the target, then run the exit handlers it registered, as a process exit would."""
    import atexit
    import traceback

    atexit._clear()  # the zygote's handlers belong to the zygote (a child ends with os._exit)
    module, _, function = request["target"].partition(":")
    sys.argv = [request["target"]]
    try:
        return int(getattr(importlib.import_module(module), function)(request["options"]) or 0)
    except SystemExit as stop:
        return stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BaseException:  # noqa: BLE001 - what an uncaught exception prints, then its exit code
        traceback.print_exc()
        return 1
    finally:
        atexit._run_exitfuncs()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001
                pass


def _become_kernel(request: dict) -> int:
    # ipykernel read JPY_PARENT_PID into a class default when the zygote imported it: name the real
    # parent (the zygote) so the kernel exits if it is orphaned, as a cold kernel does
    sys.argv = ["ipykernel_launcher", *request["argv"], f"--IPKernelApp.parent_handle={os.getppid()}"]
    from ipykernel import kernelapp

    try:
        kernelapp.launch_new_instance()
    except SystemExit as stop:
        return stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001
                pass
    return 0


# --------------------------------------------------------------------------- entry point

def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["serve"]:
        parser = argparse.ArgumentParser(prog="python -m mmscale_core.warm_kernel serve")
        parser.add_argument("--address", default=None)
        parser.add_argument("--idle", type=float, default=IDLE_S)
        args = parser.parse_args(argv[1:])
        return serve(args.address or address(), args.idle)
    return run_client(argv)


if __name__ == "__main__":
    sys.exit(main())
