"""``mmscale morale serve | invite | export | stats``: run and harvest an annotation round.

Runs stand-alone too (``python -m mmscale_core.morale.cli serve ...``), which
skips importing the other commands; the tests and the bench start the server
that way.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import secrets
import sys
from pathlib import Path

from mmscale_core.errors import MmscaleError

DEFAULT_DB = "sqlite:///morale.sqlite"
ADMIN_TOKEN_ENV = "MMSCALE_MORALE_ADMIN_TOKEN"


def db_url(value: str) -> str:
    """A SQLAlchemy URL, or a plain file path taken as a SQLite database."""
    return value if "://" in value else f"sqlite:///{Path(value).resolve()}"


def open_existing(value: str):
    from sqlalchemy.engine import make_url

    from mmscale_core.morale.db import Database

    url = db_url(value)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and not Path(parsed.database or "").is_file():
        raise MmscaleError(f"--db {value}: no such database file (start a round with `mmscale morale serve`)")
    return Database(url)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from mmscale_core.morale.app import MoraleSettings, create_app
    from mmscale_core.morale.assignment import AssignmentPolicy

    token = args.admin_token or os.environ.get(ADMIN_TOKEN_ENV)
    generated = token is None
    token = token or secrets.token_urlsafe(24)
    settings = MoraleSettings(
        delta=args.delta, seed=args.seed, secure_cookies=args.secure_cookies,
        policy=AssignmentPolicy(ratings_per_item=args.ratings_per_item, canary_rate=args.canary_rate,
                                max_items=args.max_items, lease_hours=args.lease_hours),
    )
    app = create_app(args.data, args.predictions, db_url(args.db), token, settings=settings)
    if not is_loopback(args.host):
        print(f"warning: serving on {args.host}, reachable from other machines; put it behind HTTPS "
              "and pass --secure-cookies", file=sys.stderr)
    base = f"http://{args.host}:{args.port}"
    print(f"MORALE serving {args.data} on {base}  (admin: {base}/admin/login)", flush=True)
    if generated:
        print(f"admin token (generated; set {ADMIN_TOKEN_ENV} to fix one): {token}", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, access_log=args.access_log, log_level=args.log_level)
    return 0


def _invite(args: argparse.Namespace) -> int:
    from mmscale_core.morale.workflow import invite

    db = open_existing(args.db)
    for name in args.names:
        token = invite(db, name)
        print(f"{name}\t{args.base_url.rstrip('/')}/login/{token}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from mmscale_core.morale.export import export_dataset

    db = open_existing(args.db)
    data = args.data or db.meta("data_dir")
    if not data:
        raise MmscaleError("--data: the database does not record the dataset directory; pass --data DIR")
    summary = export_dataset(db, data, args.out, min_ratings=args.min_ratings,
                             include_existing=args.include_existing, max_item_sd=args.max_item_sd,
                             ratings_per_item=args.ratings_per_item, fmt=args.format)
    print(f"exported {summary.scenarios} scenarios ({summary.scenarios_added} added by annotators, "
          f"{summary.ratings} ratings) to {summary.out}; skipped {summary.skipped_too_few_ratings} with fewer "
          f"than {args.min_ratings} ratings and {summary.skipped_high_variance} high-variance items")
    print(f"check it with: mmscale validate {summary.out}")
    return 0


def _stats(args: argparse.Namespace) -> int:
    from mmscale_core.morale.discrepancy import reconfirmation_stats
    from mmscale_core.morale.queries import annotators_frame, canaries_frame, progress, ratings_frame
    from mmscale_core.morale.screening import screen_annotators

    db = open_existing(args.db)
    ratings = ratings_frame(db)
    stats = {
        "progress": progress(db, args.ratings_per_item),
        "reconfirmation": reconfirmation_stats(ratings),
        "annotators": screen_annotators(annotators_frame(db), ratings, canaries_frame(db)).to_dict(orient="records"),
    }
    print(json.dumps(stats, indent=2, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))
    return 0


def _add_db(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", default=DEFAULT_DB,
                   help=f"SQLAlchemy URL or SQLite file path (default {DEFAULT_DB}; "
                        "e.g. postgresql+psycopg://user@host/db)")


def _add_commands(sub) -> None:
    p = sub.add_parser("serve", help="serve the annotation interface (loopback by default)")
    p.add_argument("--data", required=True, help="dataset directory in the release format (ratings may be empty)")
    p.add_argument("--predictions", required=True, help="predictions parquet from `mmscale predict`")
    _add_db(p)
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--admin-token", help=f"admin token (>= 16 chars; default ${ADMIN_TOKEN_ENV}, else generated)")
    p.add_argument("--delta", type=float, default=1.0, help="discrepancy threshold: |s_user - s_model| > delta")
    p.add_argument("--ratings-per-item", type=int, default=3)
    p.add_argument("--canary-rate", type=float, default=0.2, help="share of images that carry an attention check")
    p.add_argument("--max-items", type=int, default=6, help="most scenarios shown with one image")
    p.add_argument("--lease-hours", type=float, default=24.0, help="unrated images go back to the pool after this")
    p.add_argument("--seed", type=int, default=None, help="seed the assignment RNG (default: system randomness)")
    p.add_argument("--secure-cookies", action="store_true", help="mark cookies Secure (when served over HTTPS)")
    p.add_argument("--access-log", action="store_true", help="log every request (paths include invitation tokens)")
    p.add_argument("--log-level", default="info")
    p.set_defaults(func=_serve)

    p = sub.add_parser("invite", help="create annotators and print their personal links")
    p.add_argument("names", nargs="+", help="annotator ids (they become the dataset's annotator ids)")
    _add_db(p)
    p.add_argument("--base-url", default="http://127.0.0.1:8000", help="where the server is reached")
    p.set_defaults(func=_invite)

    p = sub.add_parser("export", help="write the round as a dataset in the release format")
    _add_db(p)
    p.add_argument("--out", required=True, help="new dataset directory")
    p.add_argument("--data", help="the served dataset directory (default: the one recorded in the DB)")
    p.add_argument("--min-ratings", type=int, default=3, help="export scenarios with at least this many ratings")
    p.add_argument("--ratings-per-item", type=int, default=3)
    p.add_argument("--include-existing", action="store_true", help="keep the dataset's earlier ratings too")
    p.add_argument("--max-item-sd", type=float, default=None, help="drop items whose rating SD exceeds this "
                   "(the paper drops SD > 1.2)")
    p.add_argument("--format", choices=("parquet", "jsonl"), default="parquet")
    p.set_defaults(func=_export)

    p = sub.add_parser("stats", help="progress, annotator screening and reconfirmation statistics as JSON")
    _add_db(p)
    p.add_argument("--ratings-per-item", type=int, default=3)
    p.set_defaults(func=_stats)


def register(subparsers) -> None:
    p = subparsers.add_parser("morale", help="MORALE annotation interface: serve, invite, export, stats",
                              description="Run a MORALE annotation round (paper sec 3.2) and export it.")
    _add_commands(p.add_subparsers(dest="morale_command", metavar="ACTION", required=True))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mmscale morale")
    _add_commands(parser.add_subparsers(dest="morale_command", metavar="ACTION", required=True))
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except MmscaleError as err:
        print(f"mmscale morale: error: {err}", file=sys.stderr)
        return err.exit_code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
