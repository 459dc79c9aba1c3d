"""``mmscale repro``: the DVC pipeline with independent stages running side by side.

Why: ``dvc repro`` runs one stage at a time, and most stages use one core (a notebook's kernel,
a training run of a small head, a robustness suite at one torch thread), so on the 2-core
machine the embedded default's pipeline left a core idle most of its 19 minutes. DVC supports
concurrent stages: it releases its repository lock while a stage's command runs, and its
read/write locks on deps and outs keep stages that share files apart. So every job here is
``dvc --wait-for-lock repro --single-item STAGE``, started once every stage it depends on has
finished; DVC still decides whether the stage is stale and records it in ``dvc.lock``, as a
plain ``dvc repro`` would.

What runs: the stages ``dvc status`` reports changed and every stage downstream of them (a
downstream stage whose inputs came out the same is re-checked by DVC and skipped). Among the
stages that are ready, the one with the longest chain of work after it starts first, each stage
timed by the previous run here (``TIMES_FILE``), else by its ``meta: {seconds: N}`` in ``dvc.yaml``
(measured on the embedded default, so a fresh clone starts the long robustness suite early),
else ``DEFAULT_SECONDS``.

Threads: a stage's thread count is fixed, so its numbers never depend on how many ran beside it:
``meta: {threads: N}`` in ``dvc.yaml`` (default 1) is exported to the stage as
``OMP_NUM_THREADS``/``MKL_NUM_THREADS``/``OPENBLAS_NUM_THREADS``; ``threads: all`` leaves the
environment alone (the library defaults: every core) and the stage runs alone. The running
stages' threads never add up to more than ``--jobs`` (oversubscribed OpenMP threads spin and
can make torch many times slower). The training runs also fix ``torch_threads`` in the
profile, so a plain ``dvc repro`` computes what ``mmscale repro`` does.

Output: one line per stage, as it ends, with its time; each stage's own output goes to its log
(``LOG_DIR``), whose tail is printed if the stage fails. After a failure no new stage starts,
the running ones finish, and a re-run continues from what is done.

(layout.md puts this in ``pipeline/``; it stays at the package root, like ``cli.py``, because it
decides only when stages run, never what they compute, and no stage lists it as a dependency.)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from mmscale_core.errors import MmscaleError
from mmscale_core.io import write_json, write_text

LOG_DIR = Path(".dvc/tmp/mmscale-repro")
TIMES_FILE = LOG_DIR / "seconds.json"
DEFAULT_SECONDS = 30.0
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
UNCHANGED = re.compile(r"didn't change, skipping")
FROM_RUN_CACHE = re.compile(r"is cached - skipping run")


@dataclass
class Stage:
    """One DVC stage as the scheduler sees it: its name, what it waits for, its thread count."""

    name: str
    upstream: set[str]
    threads: int | None  # None: ``all`` (every core, runs alone)
    seconds: float | None = None  # meta.seconds: the expected time, when no run here has timed it
    downstream: set[str] = field(default_factory=set)


    def cores_needed(self, cores: int) -> int:
        """How many of ``cores`` the stage takes while it runs (all of them for ``threads: all``)."""
        return cores if self.threads is None else self.threads


@dataclass
class Plan:
    """The stages of a run in dependency order, and which of them are to run."""

    stages: dict[str, Stage]
    to_run: list[str]


def stage_threads(meta, name: str, cores: int) -> int | None:
    """A stage's ``meta.threads``: an integer >= 1 (capped at ``cores``), ``all`` (None), default 1."""
    value = meta.get("threads", 1) if isinstance(meta, dict) else 1
    if value == "all":
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise MmscaleError(f"dvc.yaml: stage {name}: meta.threads must be a positive integer or 'all', got {value!r}")
    return min(value, cores)


def stage_seconds(meta, name: str) -> float | None:
    """A stage's ``meta.seconds`` (a scheduling hint: its expected time), None when it has none."""
    value = meta.get("seconds") if isinstance(meta, dict) else None
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise MmscaleError(f"dvc.yaml: stage {name}: meta.seconds must be a number of seconds, got {value!r}")
    return float(value)


def read_plan(root: str | os.PathLike = ".", cores: int | None = None, targets: list[str] | None = None) -> Plan:
    """The pipeline's stages (``dvc.yaml``) and the stale ones plus everything downstream of them."""
    from dvc.repo import Repo

    cores = cores or os.cpu_count() or 1
    with Repo(str(root)) as repo, repo.lock:  # what ``dvc status`` reports, from one read of the index
        graph = repo.index.graph  # an edge stage -> a stage it depends on
        stages = {s.addressing: Stage(s.addressing, {d.addressing for d in graph.successors(s)},
                                      stage_threads(getattr(s, "meta", None), s.addressing, cores),
                                      stage_seconds(getattr(s, "meta", None), s.addressing))
                  for s in graph}
        stale = {s.addressing for s in graph if s.status()}
    for stage in stages.values():
        for up in stage.upstream:
            stages[up].downstream.add(stage.name)
    wanted = set(stages)
    if targets:
        unknown = sorted(set(targets) - set(stages))
        if unknown:
            raise MmscaleError(f"dvc.yaml has no stage {', '.join(unknown)} (stages: {', '.join(stages)})")
        wanted = closure(stages, set(targets), "upstream")
    run = closure(stages, stale & wanted, "downstream") & wanted
    return Plan(stages, [name for name in topological(stages) if name in run])


def closure(stages: dict[str, Stage], start: set[str], direction: str) -> set[str]:
    """``start`` and every stage reachable from it along ``direction`` (``upstream``/``downstream``)."""
    seen, todo = set(start), list(start)
    while todo:
        for nxt in getattr(stages[todo.pop()], direction):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def topological(stages: dict[str, Stage]) -> list[str]:
    """Stage names, every stage after those it depends on (ties in ``dvc.yaml`` order)."""
    order, done = [], set()
    pending = list(stages)
    while pending:
        ready = [n for n in pending if stages[n].upstream <= done]
        if not ready:
            raise MmscaleError(f"dvc.yaml: the stages {', '.join(pending)} depend on each other in a circle")
        for name in ready:
            order.append(name)
            done.add(name)
        pending = [n for n in pending if n not in done]
    return order


def critical_path(stages: dict[str, Stage], names: list[str], seconds: dict[str, float]) -> dict[str, float]:
    """For each stage to run: its expected time plus the longest chain of expected times after it.

    A stage's expected time: ``seconds`` (measured here), else its ``meta.seconds``, else ``DEFAULT_SECONDS``.
    """
    chosen = set(names)
    longest: dict[str, float] = {}
    for name in reversed(names):
        after = [longest[d] for d in stages[name].downstream if d in chosen]
        hint = stages[name].seconds
        expected = seconds.get(name, hint if hint is not None else DEFAULT_SECONDS)
        longest[name] = expected + max(after, default=0.0)
    return longest


def format_seconds(seconds: float) -> str:
    """``12.3 s`` or ``4 min 05 s``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(round(seconds)), 60)
    return f"{minutes} min {rest:02d} s"


def log_path(name: str) -> Path:
    """Where a stage's output goes (``@`` of matrix stages kept; path separators replaced)."""
    return LOG_DIR / (re.sub(r"[^A-Za-z0-9@._-]", "_", name) + ".log")


def stage_environment(threads: int | None) -> dict[str, str]:
    """The job's environment: this Python's ``bin`` first on PATH (``mmscale``, ``dvc``), the thread count."""
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    if threads is not None:
        env.update({variable: str(threads) for variable in THREAD_VARIABLES})
    return env


@dataclass
class Job:
    name: str
    process: subprocess.Popen
    started: float
    threads: int
    log: Path


def run_plan(plan: Plan, jobs: int, *, out=sys.stdout) -> int:
    """Run ``plan.to_run`` with at most ``jobs`` threads busy; one line per finished stage. Returns 0 or 1."""
    cores = max(1, int(jobs))
    dvc = [sys.executable, "-m", "dvc"]
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    seconds = _read_times()
    priority = critical_path(plan.stages, plan.to_run, seconds)
    waiting = list(plan.to_run)
    finished: set[str] = set(plan.stages) - set(plan.to_run)
    running: list[Job] = []
    failed: list[str] = []
    total = len(plan.to_run)
    started = time.perf_counter()
    done = 0

    def start(name: str) -> None:
        stage = plan.stages[name]
        log = log_path(name)
        handle = open(log, "w", encoding="utf-8")
        try:
            process = subprocess.Popen([*dvc, "--wait-for-lock", "repro", "--single-item", name],
                                       stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       env=stage_environment(stage.threads), start_new_session=True)
        finally:
            handle.close()
        running.append(Job(name, process, time.perf_counter(), stage.cores_needed(cores), log))

    try:
        while waiting or running:
            busy = sum(job.threads for job in running)
            if not failed:
                ready = sorted((n for n in waiting if plan.stages[n].upstream <= finished),
                               key=lambda n: -priority[n])
                for name in ready:
                    need = plan.stages[name].cores_needed(cores)
                    if running and busy + need > cores:
                        break  # the most urgent ready stage waits for room; nothing overtakes it
                    waiting.remove(name)
                    start(name)
                    busy += need
            elif not running:
                break
            time.sleep(0.2)
            for job in [j for j in running if j.process.poll() is not None]:
                running.remove(job)
                took = time.perf_counter() - job.started
                done += 1
                text = job.log.read_text(encoding="utf-8", errors="replace")
                if job.process.returncode != 0:
                    failed.append(job.name)
                    print(f"[{done}/{total}] {job.name}: FAILED (exit {job.process.returncode}) after "
                          f"{format_seconds(took)}; its output ({job.log}) ends:", file=out)
                    print("\n".join("    " + line for line in _tail(text)), file=out)
                    continue
                finished.add(job.name)
                if UNCHANGED.search(text):
                    result = "unchanged"
                elif FROM_RUN_CACHE.search(text):
                    result = f"restored from DVC's run cache ({format_seconds(took)})"
                else:
                    seconds[job.name] = round(took, 1)
                    result = format_seconds(took)
                print(f"[{done}/{total}] {job.name}: {result}", file=out, flush=True)
    except KeyboardInterrupt:
        for job in running:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(job.process.pid, signal.SIGINT)
        for job in running:
            job.process.wait()
        raise
    finally:
        write_json(TIMES_FILE, seconds)
    wall = time.perf_counter() - started
    if failed:
        print(f"stopped: {', '.join(failed)} failed; not started: {len(waiting)} stage(s). Fix it and run again: "
              f"what finished is kept (DVC re-runs only what is stale).", file=out)
        return 1
    print(f"{total} stage(s) in {format_seconds(wall)}, up to {cores} at a time", file=out)
    return 0


def set_profile(params_file: str | os.PathLike, profile: str) -> str | None:
    """Make ``params.yaml`` name ``profile`` (its one ``profile:`` line); returns the profile it named before."""
    path = Path(params_file)
    text = path.read_text(encoding="utf-8")
    match = re.search(r"^profile:[ \t]*([A-Za-z0-9_-]+)", text, flags=re.M)
    if match is None:
        raise MmscaleError(f"{path}: no top-level 'profile: NAME' line")
    import yaml

    profiles = (yaml.safe_load(text) or {}).get("profiles", {})
    if profile not in profiles:
        raise MmscaleError(f"{path}: no profile {profile!r} under 'profiles' (has: {', '.join(profiles)})")
    before = match.group(1)
    if before != profile:
        write_text(path, text[: match.start(1)] + profile + text[match.end(1):])
    return before


def _read_times() -> dict[str, float]:
    try:
        data = json.loads(TIMES_FILE.read_text(encoding="utf-8"))
        return {str(k): float(v) for k, v in data.items()}
    except (OSError, ValueError, AttributeError):
        return {}


def _tail(text: str, lines: int = 40) -> list[str]:
    return [line.rsplit("\r", 1)[-1] for line in text.rstrip().splitlines()[-lines:]]


def _cmd_repro(args: argparse.Namespace) -> int:
    jobs = args.jobs or os.cpu_count() or 1
    if args.profile:
        before = set_profile(args.params, args.profile)
        note = "" if before == args.profile else f" (params.yaml named {before}: now {args.profile})"
        print(f"mmscale repro: profile {args.profile}{note}", flush=True)
    plan = read_plan(".", cores=jobs, targets=args.targets or None)
    if not plan.to_run:
        print("mmscale repro: every stage is up to date", flush=True)
        return 0
    print(f"mmscale repro: {len(plan.to_run)} of {len(plan.stages)} stage(s) to run, up to {jobs} at a time; "
          f"each stage's output: {LOG_DIR}/", flush=True)
    if args.dry:
        for name in plan.to_run:
            print(f"  {name}")
        return 0
    return run_plan(plan, jobs)


def register(subparsers) -> None:
    p = subparsers.add_parser("repro", help="run the DVC pipeline, independent stages side by side")
    p.add_argument("targets", nargs="*", help="stages to bring up to date (default: all)")
    p.add_argument("--jobs", "-j", type=int, default=None, help="cores to use (default: all of them)")
    p.add_argument("--profile", default=None, help="the profile to run (written to params.yaml first)")
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--dry", action="store_true", help="print the stages that would run, run nothing")
    p.set_defaults(func=_cmd_repro)
