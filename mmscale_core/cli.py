"""The ``mmscale`` command.

Each feature module owns its subcommands: it defines ``register(subparsers)``,
which adds their parsers and sets ``func`` (called with the parsed args, returning
an exit code). Benchmarks register under ``mmscale bench NAME`` the same way
through ``register_bench(subparsers)``, listed in
``mmscale_core.bench.BENCH_MODULES``. To add a command, add it and its module to ``COMMAND_MODULES``.

User errors (:class:`~mmscale_core.errors.MmscaleError`) are printed as a
message with a non-zero exit code, never as a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# command -> the module whose ``register(subparsers)`` adds it, in the order ``mmscale --help`` lists them.
# Why a table: ``mmscale notebook`` (every DVC stage) builds only its own parser, so it does not import
# pandas, scikit-learn and scipy for commands it will not run (~2 s a stage on 2 cores);
# ``tests/test_foundation.py`` checks the table against what each module registers.
COMMAND_MODULES: dict[str, str] = {
    "validate": "mmscale_core.data",
    "export": "mmscale_core.data",
    "site": "mmscale_core.report",
    "data": "mmscale_core.pipeline",
    "features": "mmscale_core.pipeline",
    "repro": "mmscale_core.repro",
    "notebook": "mmscale_core.notebook_runner",
    "train": "mmscale_core.train_cli",
    "predict": "mmscale_core.train_cli",
    "morale": "mmscale_core.morale.cli",
    "simulate": "mmscale_core.simulator.cli",
    "calibrate-report": "mmscale_core.simulator.cli",
    "evaluate": "mmscale_core.evaluate_cli",
    "robustness": "mmscale_core.robustness.cli",
    "judge": "mmscale_core.judges.cli",
    "verify-rationales": "mmscale_core.judges.cli",
    "judge-stage": "mmscale_core.judges.stage",
    "save-tiny-judge": "mmscale_core.judges.stage",
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``mmscale`` parser; with ``command`` (a name of ``COMMAND_MODULES`` or "bench") only that
    command's, else every command's (``--help``, an unknown name: argparse then lists them all)."""
    parser = argparse.ArgumentParser(
        prog="mmscale",
        description="Companion to the MM-SCALE paper: data, training, evaluation, report.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    if command in COMMAND_MODULES:
        importlib.import_module(COMMAND_MODULES[command]).register(sub)
        return parser
    if command != "bench":
        for name in dict.fromkeys(COMMAND_MODULES.values()):
            importlib.import_module(name).register(sub)
    bench = sub.add_parser("bench", help="benchmarks that print measured ratios side by side")
    bench_sub = bench.add_subparsers(dest="bench", metavar="NAME", required=True)
    from mmscale_core.bench import BENCH_MODULES

    for name in BENCH_MODULES:
        importlib.import_module(name).register_bench(bench_sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from mmscale_core.errors import MmscaleError

    argv = sys.argv[1:] if argv is None else list(argv)
    command = argv[0] if argv and not argv[0].startswith("-") else None  # the parser has no option before it
    args = build_parser(command).parse_args(argv)
    try:
        code = args.func(args)
    except MmscaleError as err:
        print(f"mmscale {args.command}: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(code or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
