"""``mmscale morale serve | invite | export | stats | check``: run and harvest an annotation round.

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


def admin_token_from(args: argparse.Namespace) -> tuple[str, bool]:
    """(token, generated): from --admin-token-file, else $MMSCALE_MORALE_ADMIN_TOKEN, else a new one.

    Never from the command line itself: argv is visible to every user of the machine (``ps``).
    """
    if getattr(args, "admin_token", None):
        raise MmscaleError(f"--admin-token: a token on the command line is visible to every user in `ps`; "
                           f"put it in ${ADMIN_TOKEN_ENV} or in a file for --admin-token-file")
    if args.admin_token_file:
        path = Path(args.admin_token_file)
        try:
            token = path.read_text(encoding="utf-8").strip()
        except OSError as err:
            raise MmscaleError(f"--admin-token-file {path}: cannot read it ({err.strerror})") from None
        if not token:
            raise MmscaleError(f"--admin-token-file {path}: the file is empty")
        return token, False
    token = os.environ.get(ADMIN_TOKEN_ENV)
    return (token, False) if token else (secrets.token_urlsafe(24), True)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from mmscale_core.morale.app import MoraleSettings, create_app
    from mmscale_core.morale.assignment import AssignmentPolicy

    token, generated = admin_token_from(args)
    base = (args.public_url or f"http://{args.host}:{args.port}").rstrip("/")
    settings = MoraleSettings(
        delta=args.delta, seed=args.seed, secure_cookies=args.secure_cookies, public_url=base,
        min_prediction_coverage=args.min_prediction_coverage,
        policy=AssignmentPolicy(ratings_per_item=args.ratings_per_item, canary_rate=args.canary_rate,
                                min_items=args.min_items, max_items=args.max_items, lease_hours=args.lease_hours),
    )
    app = create_app(args.data, args.predictions, db_url(args.db), token, settings=settings,
                     accept_dataset_change=args.accept_dataset_change)
    if not is_loopback(args.host):
        print(f"warning: serving on {args.host}, reachable from other machines; put it behind HTTPS "
              "and pass --secure-cookies", file=sys.stderr)
    sync = app.state.sync
    print(f"predictions cover {sync['with_prediction']} of {sync['scenarios']} scenarios "
          f"({sync['with_prediction'] / max(sync['scenarios'], 1):.0%}); the others skip the discrepancy step"
          + (f"; {sync['added']} scenario(s) added to the round" if sync["added"] else "")
          + (f"; {sync['retired']} retired" if sync["retired"] else ""), flush=True)
    print(f"MORALE serving {args.data} on http://{args.host}:{args.port}  (links and admin: {base}/admin/login)",
          flush=True)
    if generated:
        print(f"admin token (generated; set {ADMIN_TOKEN_ENV} or --admin-token-file to fix one): {token}",
              flush=True)
    uvicorn.run(app, host=args.host, port=args.port, access_log=args.access_log, log_level=args.log_level)
    return 0


def _invite(args: argparse.Namespace) -> int:
    from mmscale_core.morale.app import DEFAULT_PUBLIC_URL
    from mmscale_core.morale.workflow import invite, reissue

    db = open_existing(args.db)
    base = (args.base_url or db.meta("public_url") or DEFAULT_PUBLIC_URL).rstrip("/")
    for name in args.names:
        token = reissue(db, name) if args.reissue else invite(db, name)
        print(f"{name}\t{base}/login/{token}")
    return 0


def _check(args: argparse.Namespace) -> int:
    from mmscale_core.morale.pool import load_pool

    pool = load_pool(args.data, decode_images=True)
    unrated = sum(1 for r in pool.records if not r.get("ratings"))
    print(f"{args.data}: a valid MORALE pool: {len(pool.records)} scenarios on {len(pool.image_ids)} images, "
          f"{unrated} without ratings yet")
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
    p.add_argument("--admin-token", help=argparse.SUPPRESS)  # refused with a message: argv shows in `ps`
    p.add_argument("--admin-token-file", help=f"file holding the admin token (default ${ADMIN_TOKEN_ENV}, else "
                   "generated and printed); at least 16 random characters")
    p.add_argument("--public-url", help="the URL annotators reach the server at (behind a proxy: its HTTPS URL); "
                   "invitation links use it (default http://HOST:PORT)")
    p.add_argument("--min-prediction-coverage", type=float, default=0.95,
                   help="refuse to start when the predictions cover less of the pool than this (0: allow none)")
    p.add_argument("--accept-dataset-change", action="store_true",
                   help="the dataset differs from the one the database was created from: add its new scenarios "
                        "and retire the removed ones (collected ratings are kept)")
    p.add_argument("--delta", type=float, default=1.0, help="discrepancy threshold: |s_user - s_model| > delta")
    p.add_argument("--ratings-per-item", type=int, default=3)
    p.add_argument("--canary-rate", type=float, default=0.2, help="share of images that carry an attention check")
    p.add_argument("--min-items", type=int, default=3, help="fewest scenarios shown with one image (paper: 3), "
                   "unless no image has that many left")
    p.add_argument("--max-items", type=int, default=5, help="most scenarios shown with one image (paper: 5)")
    p.add_argument("--lease-hours", type=float, default=24.0, help="unrated images go back to the pool after this")
    p.add_argument("--seed", type=int, default=None, help="seed the assignment RNG (default: system randomness)")
    p.add_argument("--secure-cookies", action="store_true", help="mark cookies Secure (when served over HTTPS)")
    p.add_argument("--access-log", action="store_true", help="log every request (paths include invitation tokens)")
    p.add_argument("--log-level", default="info")
    p.set_defaults(func=_serve)

    p = sub.add_parser("invite", help="create annotators and print their personal links")
    p.add_argument("names", nargs="+", help="annotator ids (they become the dataset's annotator ids)")
    _add_db(p)
    p.add_argument("--base-url", help="where annotators reach the server (default: the --public-url, or "
                   "http://HOST:PORT, the server last started with)")
    p.add_argument("--reissue", action="store_true", help="new links for existing annotators whose link was "
                   "lost; their old links stop working")
    p.set_defaults(func=_invite)

    p = sub.add_parser("check", help="check a dataset as a pool to serve (ratings may be empty)")
    p.add_argument("data", help="dataset directory in the release format")
    p.set_defaults(func=_check)

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
    p = subparsers.add_parser("morale", help="MORALE annotation interface: serve, invite, export, stats, check",
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
