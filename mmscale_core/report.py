"""Build the report website: Quarto when it is installed, else a Python fallback.

``_quarto.yml`` is the single source of the site's pages. Without the
``quarto`` binary (it cannot be installed everywhere), the fallback renders the
same page list to ``_site/`` with nbconvert's markdown renderer, offline.
The reproduction issue extends the fallback to the executed notebooks.
"""

from __future__ import annotations

import argparse
import html
import re
import shutil
import subprocess
from pathlib import Path

import yaml

from mmscale_core.errors import MmscaleError
from mmscale_core.io import write_text

_FRONT_MATTER = re.compile(r"\A---\s*\n(.*?)\n---\s*\n", re.S)


def site_pages(project: Path) -> tuple[dict, list[str]]:
    """The site config and page list from ``_quarto.yml``."""
    cfg_path = project / "_quarto.yml"
    if not cfg_path.is_file():
        raise MmscaleError(f"{cfg_path}: missing (the report's page list lives there)")
    cfg = yaml.safe_load(cfg_path.read_text(encoding="utf-8")) or {}
    pages = list(cfg.get("project", {}).get("render", ["index.qmd"]))
    return cfg, pages


def _render_markdown_page(src: Path, title: str) -> str:
    from nbconvert.filters.markdown import markdown2html_mistune

    text = src.read_text(encoding="utf-8")
    meta = {}
    m = _FRONT_MATTER.match(text)
    if m:
        meta = yaml.safe_load(m.group(1)) or {}
        text = text[m.end():]
    body = markdown2html_mistune(text)
    page_title = html.escape(str(meta.get("title", title)))
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>{page_title}</title>"
        "<style>body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;"
        "line-height:1.5}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2rem .5rem}</style>"
        f"</head><body><h1>{page_title}</h1>{body}</body></html>\n"
    )


def build_site(project: str | Path = ".", out: str | Path = "_site", use_quarto: bool | None = None) -> Path:
    project, out = Path(project), Path(out)
    if use_quarto is None:
        use_quarto = shutil.which("quarto") is not None
    if use_quarto:
        subprocess.run(["quarto", "render", str(project)], check=True)
        return project / "_site"
    cfg, pages = site_pages(project)
    title = cfg.get("website", {}).get("title", "MM-SCALE companion")
    for page in pages:
        src = project / page
        if src.suffix in (".qmd", ".md") and src.is_file():
            write_text(out / (src.with_suffix(".html").name), _render_markdown_page(src, title))
    return out


def _cmd_site(args: argparse.Namespace) -> int:
    out = build_site(args.project, args.out, use_quarto=False if args.fallback else None)
    print(f"report built: open {(out / 'index.html').resolve()}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("site", help="build the report website (_site/)")
    p.add_argument("--project", default=".", help="project root holding _quarto.yml")
    p.add_argument("--out", default="_site", help="output directory for the Python fallback")
    p.add_argument("--fallback", action="store_true", help="use the Python fallback even if quarto is installed")
    p.set_defaults(func=_cmd_site)
