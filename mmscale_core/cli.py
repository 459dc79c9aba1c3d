"""The ``mmscale`` command.

Each feature module owns its subcommand: it defines ``register(subparsers)``,
which adds a parser and sets ``func`` (called with the parsed args, returning
an exit code). Benchmarks register under ``mmscale bench NAME`` the same way
through ``register_bench(subparsers)``, listed in
``mmscale_core.bench.BENCH_MODULES``. To add a command, add its module here.

User errors (:class:`~mmscale_core.errors.MmscaleError`) are printed as a
message with a non-zero exit code, never as a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Modules that define ``register(subparsers)``.
COMMAND_MODULES: tuple[str, ...] = (
    "mmscale_core.data",
    "mmscale_core.report",
    "mmscale_core.pipeline",
    "mmscale_core.repro",
    "mmscale_core.notebook_runner",
    "mmscale_core.train_cli",
    "mmscale_core.morale.cli",
    "mmscale_core.simulator.cli",
    "mmscale_core.evaluate_cli",
    "mmscale_core.robustness.cli",
    "mmscale_core.judges.cli",
    "mmscale_core.judges.stage",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mmscale",
        description="Companion to the MM-SCALE paper: data, training, evaluation, report.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    bench = sub.add_parser("bench", help="benchmarks that print measured ratios side by side")
    bench_sub = bench.add_subparsers(dest="bench", metavar="NAME", required=True)
    from mmscale_core.bench import BENCH_MODULES

    for name in BENCH_MODULES:
        importlib.import_module(name).register_bench(bench_sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from mmscale_core.errors import MmscaleError

    args = build_parser().parse_args(argv)
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
