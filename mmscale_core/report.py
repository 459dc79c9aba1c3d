"""Build the report website: Quarto when it is installed, else a Python fallback.

``_quarto.yml`` is the single source of the site: its ``project.render`` list
(globs allowed) names the pages and ``website.navbar`` the links. Quarto users
run ``quarto render``; without the binary, the fallback renders the same pages
to the same paths under ``_site/``, offline:

- ``.qmd``/``.md`` pages: front matter title, Quarto's ``{{< include FILE >}}``
  shortcode (how the index pulls in generated tables), Markdown via nbconvert's
  renderer; local images are copied next to the page.
- ``.ipynb`` pages: the executed notebooks (never re-run here, like Quarto's
  ``execute: enabled: false``), through nbconvert with code cells hidden and
  figures embedded in the page.
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
_INCLUDE = re.compile(r"\{\{<\s*include\s+(\S+)\s*>\}\}")
_LOCAL_IMG = re.compile(r"""(?:src=["']|!\[[^\]]*\]\()([^"')\s]+\.(?:png|svg|jpg|jpeg|gif|webp))""", re.I)

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:64rem;margin:0 auto;padding:0 1rem 3rem;
line-height:1.55;color:#222}
nav{display:flex;flex-wrap:wrap;gap:.25rem 1rem;padding:.8rem 0;border-bottom:1px solid #ddd;margin-bottom:1.5rem}
nav a{color:#0b5cad;text-decoration:none}nav a.brand{font-weight:600;color:#222;margin-right:1rem}
table{border-collapse:collapse;margin:1rem 0;font-size:.92rem}td,th{border:1px solid #ccc;padding:.25rem .6rem}
th{background:#f4f4f4}img{max-width:100%}code{background:#f4f4f4;padding:0 .2rem}
pre{white-space:pre-wrap;overflow-wrap:anywhere}
"""


def load_site_config(project: Path) -> dict:
    cfg_path = project / "_quarto.yml"
    if not cfg_path.is_file():
        raise MmscaleError(f"{cfg_path}: missing (the report's page list lives there)")
    return yaml.safe_load(cfg_path.read_text(encoding="utf-8")) or {}


def site_pages(project: Path, cfg: dict | None = None) -> list[Path]:
    """Pages named by ``project.render`` (globs expanded, in order, relative to ``project``)."""
    cfg = cfg if cfg is not None else load_site_config(project)
    pages: list[Path] = []
    for pattern in cfg.get("project", {}).get("render", ["index.qmd"]):
        matches = sorted(project.glob(pattern)) if any(c in pattern for c in "*?[") else [project / pattern]
        pages += [m.relative_to(project) for m in matches if m.is_file()]
    return pages


def _html_name(page: Path) -> Path:
    return page.with_suffix(".html")


def _navbar(cfg: dict, page: Path) -> str:
    site = cfg.get("website", {})
    up = "../" * (len(page.parts) - 1)
    links = [f"<a class='brand' href='{up}index.html'>{html.escape(site.get('title', 'Report'))}</a>"]
    for item in site.get("navbar", {}).get("left", []):
        href = _html_name(Path(item["href"])).as_posix()
        links.append(f"<a href='{up}{href}'>{html.escape(item.get('text', href))}</a>")
    return "<nav>" + "".join(links) + "</nav>"


def _wrap(cfg: dict, page: Path, title: str, body: str) -> str:
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>"
        f"<body>{_navbar(cfg, page)}<main>{body}</main></body></html>\n"
    )


def _expand_includes(text: str, base: Path, strict: bool, depth: int = 0) -> str:
    def include(match: re.Match) -> str:
        path = base / match.group(1)
        if not path.is_file():
            if strict:
                raise MmscaleError(f"include {match.group(1)} not found (needed by the report; run `make repro` first)")
            return f"> *Not built yet: `{match.group(1)}` is produced by `make repro`.*\n"
        inner = path.read_text(encoding="utf-8")
        return _expand_includes(inner, path.parent, strict, depth + 1) if depth < 5 else inner

    return _INCLUDE.sub(include, text)


def _render_markdown(project: Path, page: Path, strict: bool) -> tuple[str, str]:
    from nbconvert.filters.markdown import markdown2html_mistune

    text = (project / page).read_text(encoding="utf-8")
    meta: dict = {}
    m = _FRONT_MATTER.match(text)
    if m:
        meta = yaml.safe_load(m.group(1)) or {}
        text = text[m.end():]
    text = _expand_includes(text, (project / page).parent, strict)
    title = str(meta.get("title", page.stem))
    return title, f"<h1>{html.escape(title)}</h1>" + markdown2html_mistune(text)


def _render_notebook(project: Path, page: Path, strict: bool) -> tuple[str, str]:
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(project / page, as_version=4)
    exporter = HTMLExporter(template_name="basic", exclude_input=True, exclude_input_prompt=True,
                            exclude_output_prompt=True)
    body, _ = exporter.from_notebook_node(nb)
    title = nb.metadata.get("title") or page.stem.replace("_", " ")
    return title, body


def _copy_local_images(project: Path, page: Path, body: str, out: Path) -> None:
    for ref in set(_LOCAL_IMG.findall(body)):
        if ref.startswith(("http:", "https:", "data:", "/")):
            continue
        src = (project / page).parent / ref
        if src.is_file():
            dst = out / page.parent / ref
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)


def build_site(project: str | Path = ".", out: str | Path | None = None, use_quarto: bool | None = None,
               strict: bool = True) -> Path:
    """Render the site; returns the output directory (``_site`` by default).

    ``strict=False`` (``make site`` before ``make repro``) renders a notice in
    place of a missing generated table instead of failing.
    """
    project = Path(project)
    cfg = load_site_config(project)
    if use_quarto is None:
        use_quarto = shutil.which("quarto") is not None
    if use_quarto:
        subprocess.run(["quarto", "render", str(project)], check=True)
        return project / cfg.get("project", {}).get("output-dir", "_site")
    out = Path(out) if out is not None else project / cfg.get("project", {}).get("output-dir", "_site")
    for page in site_pages(project, cfg):
        render = _render_notebook if page.suffix == ".ipynb" else _render_markdown
        title, body = render(project, page, strict)
        _copy_local_images(project, page, body, out)
        write_text(out / _html_name(page), _wrap(cfg, page, title, body))
    return out


def _cmd_site(args: argparse.Namespace) -> int:
    out = build_site(args.project, args.out, use_quarto=False if args.fallback else None, strict=args.strict)
    print(f"report built: open {(out / 'index.html').resolve()}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("site", help="build the report website (_site/)")
    p.add_argument("--project", default=".", help="project root holding _quarto.yml")
    p.add_argument("--out", default=None, help="output directory for the Python fallback (default: _site)")
    p.add_argument("--fallback", action="store_true", help="use the Python fallback even if quarto is installed")
    p.add_argument("--strict", action="store_true", help="fail on a missing generated table (after make repro)")
    p.set_defaults(func=_cmd_site)
