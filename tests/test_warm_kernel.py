"""The warm kernel: notebooks run in a fork of a pre-imported zygote, and nothing else changes.

Each test uses its own zygote address and a short preload list, so tests neither share a
zygote with the pipeline nor wait for torch to import (except the RNG test, which needs it).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import nbformat
import pytest

from mmscale_core import warm_kernel

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the warm kernel is Linux-only")

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def zygote_env(monkeypatch):
    """A private zygote address (and short preload); the zygote is killed after the test."""
    addr = f"mmscale-test-{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv("MMSCALE_WARM_KERNEL", "1")
    monkeypatch.setenv("MMSCALE_WARM_KERNEL_ADDRESS", addr)
    monkeypatch.setenv("MMSCALE_WARM_KERNEL_PRELOAD", "wave,ipykernel.kernelapp")  # wave: imported by nothing else
    monkeypatch.setenv("MMSCALE_WARM_KERNEL_IDLE", "30")
    # the kernel's client (warm_kernel.RUN_THIS_MODULE) must find this checkout from any cwd
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    yield addr
    for pid in zygote_pids(addr):
        os.kill(pid, signal.SIGKILL)


def zygote_pids(addr: str) -> list[int]:
    out = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmd = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"serve" in cmd and addr.encode() in cmd:
                out.append(int(proc.name))
    return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def run_probe(tmp_path: Path, code: str) -> dict:
    """Execute a one-cell notebook in ``tmp_path`` with the warm kernel; returns what it printed as JSON."""
    import papermill as pm

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(textwrap.dedent(code))]
    src, out = tmp_path / "probe.ipynb", tmp_path / "probe.out.ipynb"
    nbformat.write(nb, src)
    pm.execute_notebook(str(src), str(out), kernel_name=warm_kernel.kernel_name(), cwd=str(tmp_path),
                        progress_bar=False, language="python")
    text = "".join(o.get("text", "") for o in nbformat.read(out, 4).cells[0].outputs)
    return json.loads(text.strip().splitlines()[-1])


PROBE = """
import json, os, sys
import matplotlib
import mmscale_core
print(json.dumps({"cwd": os.getcwd(), "env": os.environ.get("PROBE_VALUE"), "pid": os.getpid(),
                  "preloaded": "wave" in sys.modules, "backend": matplotlib.get_backend(),
                  "project": mmscale_core.__file__}))
"""


def test_notebook_runs_in_a_fork_with_the_callers_directory_environment_and_project_code(
        tmp_path, zygote_env, monkeypatch):
    # a stand-in project package in the notebook's directory: the kernel must import it, not the zygote's
    (tmp_path / "mmscale_core").mkdir()
    (tmp_path / "mmscale_core" / "__init__.py").write_text("")
    # a zygote started from another directory (python -m puts that directory first on its sys.path)
    subprocess.Popen([sys.executable, "-m", "mmscale_core.warm_kernel", "serve", "--address", zygote_env,
                      "--idle", "30"], cwd=ROOT, start_new_session=True)
    monkeypatch.setenv("PROBE_VALUE", "first")
    first = run_probe(tmp_path, PROBE)
    assert first["cwd"] == str(tmp_path)
    assert first["env"] == "first"
    assert first["preloaded"]
    assert first["project"] == str(tmp_path / "mmscale_core" / "__init__.py")
    assert "inline" in first["backend"]  # figures are shown in the executed notebook
    [zygote] = zygote_pids(zygote_env)
    monkeypatch.setenv("PROBE_VALUE", "second")
    second = run_probe(tmp_path, PROBE)  # the same zygote, a new child with the new environment
    assert second["env"] == "second" and second["pid"] != first["pid"]
    assert zygote_pids(zygote_env) == [zygote]
    assert not alive(first["pid"]) and not alive(second["pid"])  # kernels end with their notebook


def test_kernel_imports_from_the_callers_pythonpath_not_the_zygotes(tmp_path, zygote_env, monkeypatch):
    """The zygote is shared by every checkout using this Python: the client's PYTHONPATH must win."""
    for side in ("zygote", "caller"):
        (tmp_path / side / "which_checkout").mkdir(parents=True)
        (tmp_path / side / "which_checkout" / "__init__.py").write_text(f"SIDE = {side!r}\n")
    (tmp_path / "nb").mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(tmp_path / "zygote")])}
    subprocess.Popen([sys.executable, "-m", "mmscale_core.warm_kernel", "serve", "--address", zygote_env,
                      "--idle", "30"], cwd=ROOT, env=env, start_new_session=True)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), str(tmp_path / "caller")]))
    out = run_probe(tmp_path / "nb", "import json, which_checkout\nprint(json.dumps({'side': which_checkout.SIDE}))")
    assert out == {"side": "caller"}
    assert zygote_pids(zygote_env), "the probe ran in a fork of the zygote"


def test_same_random_streams_as_a_cold_kernel(tmp_path, zygote_env, monkeypatch):
    """Unseeded generators start from fresh entropy in each kernel; seeded ones give a cold kernel's numbers."""
    monkeypatch.setenv("MMSCALE_WARM_KERNEL_PRELOAD", "torch,ipykernel.kernelapp")
    code = """
    import json, random, sys, torch
    fresh = {"torch": torch.rand(4).tolist(), "py": random.random()}
    torch.manual_seed(0)
    random.seed(0)
    print(json.dumps({"fresh": fresh, "torch": torch.rand(4).tolist(), "py": random.random(),
                      "warm": "torch" in sys.modules}))
    """
    warm_a, warm_b = run_probe(tmp_path, code), run_probe(tmp_path, code)
    monkeypatch.setenv("MMSCALE_WARM_KERNEL", "0")
    cold = run_probe(tmp_path, code)
    assert warm_a["warm"] and warm_b["warm"]
    assert warm_a["torch"] == warm_b["torch"] == cold["torch"]
    assert warm_a["py"] == warm_b["py"] == cold["py"]
    for key in ("torch", "py"):  # not a copy of the zygote's state
        assert warm_a["fresh"][key] != warm_b["fresh"][key]


def test_killed_client_takes_its_kernel_down(tmp_path, zygote_env):
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name=warm_kernel.kernel_name(), cwd=str(tmp_path))
    outputs = []
    try:
        reply = kc.execute_interactive("import os; print(os.getpid())", timeout=60,
                                       output_hook=lambda msg: outputs.append(msg))
        assert reply["content"]["status"] == "ok"
    finally:
        kc.stop_channels()
    kernel_pid = int(next(m["content"]["text"] for m in outputs if m["msg_type"] == "stream"))
    client_pid = km.provisioner.process.pid
    assert kernel_pid != client_pid and alive(kernel_pid)
    os.kill(client_pid, signal.SIGKILL)
    deadline = time.monotonic() + 20
    while alive(kernel_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(kernel_pid)
    km.cleanup_resources()


def test_zygote_exits_when_idle(zygote_env, monkeypatch):
    proc = subprocess.Popen([sys.executable, "-m", "mmscale_core.warm_kernel", "serve", "--address", zygote_env,
                             "--idle", "1"], env={**os.environ, "MMSCALE_WARM_KERNEL_PRELOAD": "json"})
    assert proc.wait(timeout=30) == 0
    assert warm_kernel._connect(zygote_env) is None


def test_a_zygote_that_does_not_answer_falls_back_to_a_cold_kernel(tmp_path, zygote_env):
    squatter = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    squatter.bind("\0" + zygote_env)  # holds the address, accepts nothing: the client gets no pid
    squatter.listen(1)
    try:
        code = 'import json, sys; print(json.dumps({"warm": "wave" in sys.modules}))'
        result = run_probe_with_timeout(tmp_path, code, connect_timeout=1)
        assert result["warm"] is False  # ran, in a cold kernel
    finally:
        squatter.close()


def run_probe_with_timeout(tmp_path, code, connect_timeout):
    os.environ["MMSCALE_WARM_KERNEL_CONNECT_TIMEOUT"] = str(connect_timeout)
    try:
        return run_probe(tmp_path, code)
    finally:
        del os.environ["MMSCALE_WARM_KERNEL_CONNECT_TIMEOUT"]


def test_switched_off_by_environment(monkeypatch):
    monkeypatch.setenv("MMSCALE_WARM_KERNEL", "0")
    assert warm_kernel.kernel_name() == "python3"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to connect as another user")
def test_other_users_are_refused(zygote_env):
    import shutil

    runuser, system_python = shutil.which("runuser"), "/usr/bin/python3"
    if runuser is None or not os.access(system_python, os.X_OK):
        pytest.skip("needs runuser and a system python3 that user nobody can run")
    proc = subprocess.Popen([sys.executable, "-m", "mmscale_core.warm_kernel", "serve", "--address", zygote_env,
                             "--idle", "20"], env={**os.environ, "MMSCALE_WARM_KERNEL_PRELOAD": "json"})
    try:
        deadline = time.monotonic() + 20
        while warm_kernel._connect(zygote_env) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        # a well-formed request: without the user check the zygote would fork a kernel for it
        request = json.dumps({"protocol": warm_kernel.PROTOCOL, "role": "kernel", "argv": ["-f", "/nonexistent/kernel.json"],
                              "cwd": "/", "env": {}}).encode()
        probe = textwrap.dedent(f"""
            import socket, struct, sys
            request = {request!r}
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect("\\0{zygote_env}")
            s.settimeout(10)
            try:
                socket.send_fds(s, [struct.pack("!I", len(request))], [0, 1, 2]); s.sendall(request)
                print("refused" if s.recv(4) == b"" else "served")
            except (BrokenPipeError, ConnectionResetError):
                print("refused")
        """)
        out = subprocess.run([runuser, "-u", "nobody", "--", system_python, "-c", probe], capture_output=True,
                             text=True, timeout=30)
        assert out.stdout.strip() == "refused", out.stderr
    finally:
        proc.kill()


def test_kernel_ends_when_the_process_that_started_it_dies(tmp_path, zygote_env):
    """A cold kernel polls its parent and exits with it; the warm client does the same for its child."""
    starter = textwrap.dedent("""
        import json, sys, time
        from jupyter_client.manager import start_new_kernel
        from mmscale_core import warm_kernel
        km, kc = start_new_kernel(kernel_name=warm_kernel.kernel_name())
        out = []
        kc.execute_interactive("import os; print(os.getpid())", timeout=60, output_hook=out.append)
        pid = int(next(m["content"]["text"] for m in out if m["msg_type"] == "stream"))
        print(json.dumps({"kernel": pid, "client": km.provisioner.process.pid}), flush=True)
        time.sleep(120)
    """)
    proc = subprocess.Popen([sys.executable, "-c", starter], cwd=tmp_path, stdout=subprocess.PIPE, text=True)
    try:
        pids = json.loads(proc.stdout.readline())
        assert alive(pids["kernel"]) and alive(pids["client"])
    finally:
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 20
    while (alive(pids["kernel"]) or alive(pids["client"])) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(pids["kernel"]) and not alive(pids["client"])


def test_full_preload_keeps_inline_figures_and_honours_the_backend_asked_for(tmp_path, zygote_env, monkeypatch):
    """matplotlib is imported in the zygote: each kernel still gets ipykernel's inline backend (figures in
    the executed notebook), or the one its environment names."""
    monkeypatch.delenv("MMSCALE_WARM_KERNEL_PRELOAD")
    monkeypatch.delenv("MPLBACKEND", raising=False)
    code = """
    import json, sys
    warm = "seaborn" in sys.modules
    import matplotlib, matplotlib.pyplot as plt
    plt.plot([1, 2, 3]); plt.show()
    print(json.dumps({"warm": warm, "backend": matplotlib.get_backend()}))
    """
    inline = run_probe(tmp_path, code)
    assert inline["warm"] and "inline" in inline["backend"]
    outputs = nbformat.read(tmp_path / "probe.out.ipynb", 4).cells[0].outputs
    assert any("image/png" in o.get("data", {}) for o in outputs)
    monkeypatch.setenv("MPLBACKEND", "agg")
    assert run_probe(tmp_path, code)["backend"].lower() == "agg"


CALL_TARGET = """
import atexit, json, os, sys
def main(options):
    atexit.register(lambda: print("the call's exit handler ran", flush=True))
    print(json.dumps({"pid": os.getpid(), "ppid": os.getppid(), "cwd": os.getcwd(),
                      "env": os.environ.get("PROBE_VALUE"), "options": options,
                      "preloaded": "wave" in sys.modules}), flush=True)
    if options.get("fail"):
        raise RuntimeError("boom in the forked call")
    return options["code"]
"""
ZYGOTE_HOOK = """
import atexit
atexit.register(lambda: print("the zygote's exit handler ran", flush=True))
"""


def call_forked(tmp_path: Path, options: dict) -> subprocess.CompletedProcess:
    """``run_forked("call_target:main", options)`` from a client process in ``tmp_path``, as ``mmscale notebook`` calls it."""
    client = ("import sys\nfrom mmscale_core import warm_kernel\n"
              f"code = warm_kernel.run_forked('call_target:main', {options!r})\n"
              "print('client got', code, file=sys.stderr)\nsys.exit(99 if code is None else code)\n")
    env = {**os.environ, "PROBE_VALUE": "from the client"}
    return subprocess.run([sys.executable, "-c", client], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)


def test_a_forked_call_runs_project_code_with_the_callers_streams_directory_and_environment(tmp_path, zygote_env):
    """``mmscale notebook`` runs its papermill call in a fork of the zygote: the child is the command's process
    in all but its imports, and ends as a process does (its own exit handlers run, the zygote's do not)."""
    (tmp_path / "call_target.py").write_text(CALL_TARGET)
    (tmp_path / "hooks").mkdir()
    (tmp_path / "hooks" / "zygote_hook.py").write_text(ZYGOTE_HOOK)
    env = {**os.environ, "MMSCALE_WARM_KERNEL_PRELOAD": "wave,zygote_hook",
           "PYTHONPATH": os.pathsep.join([os.environ["PYTHONPATH"], str(tmp_path / "hooks")])}
    subprocess.Popen([sys.executable, "-m", "mmscale_core.warm_kernel", "serve", "--address", zygote_env,
                      "--idle", "30"], cwd=ROOT, env=env, start_new_session=True)
    deadline = time.monotonic() + 30
    while (sock := warm_kernel._connect(zygote_env)) is None and time.monotonic() < deadline:
        time.sleep(0.02)  # bound: the client must find this zygote, not start its own
    sock.close()
    done = call_forked(tmp_path, {"code": 7, "name": "x"})
    assert done.returncode == 7, done.stderr
    report, *rest = done.stdout.splitlines()
    child = json.loads(report)
    [zygote] = zygote_pids(zygote_env)
    assert child["ppid"] == zygote and child["preloaded"]  # a fork of the zygote, which had imported wave
    assert child["cwd"] == str(tmp_path) and child["env"] == "from the client"
    assert child["options"] == {"code": 7, "name": "x"}
    assert rest == ["the call's exit handler ran"]  # not the zygote's
    assert "client got 7" in done.stderr


def test_a_failing_forked_call_prints_its_traceback_and_exits_1(tmp_path, zygote_env):
    (tmp_path / "call_target.py").write_text(CALL_TARGET)
    done = call_forked(tmp_path, {"code": 0, "fail": True})  # the client starts the zygote itself
    assert done.returncode == 1
    assert "RuntimeError: boom in the forked call" in done.stderr and "Traceback" in done.stderr
    assert zygote_pids(zygote_env)


def test_no_zygote_no_fork(monkeypatch):
    """Switched off, ``run_forked`` says so and the caller runs the call itself."""
    monkeypatch.setenv("MMSCALE_WARM_KERNEL", "0")
    assert warm_kernel.run_forked("call_target:main", {}) is None


def test_kernel_bench_prints_a_measured_ratio(tmp_path, monkeypatch, capsys):
    from mmscale_core.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MMSCALE_WARM_KERNEL", "1")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    assert main(["bench", "kernel", "--runs", "1"]) == 0
    out = capsys.readouterr().out
    assert "cold kernel" in out and "warm kernel" in out
    assert re.search(r"cold/warm ratio: \d+\.\d\dx", out)
