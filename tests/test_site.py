"""The report website's Python fallback, checked in headless Chromium."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nbformat  # noqa: E402
import pytest  # noqa: E402

from mmscale_core.errors import MmscaleError  # noqa: E402
from mmscale_core.report import build_site, site_pages  # noqa: E402

from site_check import check_site  # noqa: E402

QUARTO = """
project:
  type: website
  output-dir: _site
  render:
    - index.qmd
    - reports/notebooks/*.ipynb
website:
  title: "Test report"
  navbar:
    left:
      - href: index.qmd
        text: Overview
      - href: reports/notebooks/01_demo.ipynb
        text: Demo
execute:
  enabled: false
"""


def _png() -> bytes:
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [1, 0])
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def make_project(root: Path) -> Path:
    (root / "reports" / "notebooks").mkdir(parents=True)
    (root / "figures").mkdir()
    (root / "tables").mkdir()
    (root / "_quarto.yml").write_text(QUARTO)
    (root / "figures" / "fig.png").write_bytes(_png())
    (root / "tables" / "t.md").write_text("| metric | value | source |\n|---|---|---|\n| NDCG@5 | 0.84 | paper |\n")
    (root / "index.qmd").write_text(
        "---\ntitle: Test index\n---\n\nIntro.\n\n{{< include tables/t.md >}}\n\n![a figure](figures/fig.png)\n\n"
        "[the demo](reports/notebooks/01_demo.html)\n")
    nb = nbformat.v4.new_notebook()
    code = nbformat.v4.new_code_cell("secret_code = 1")
    code.outputs = [
        # a stage's first line, as notebook_context prints it: wider than the page unless it wraps
        nbformat.v4.new_output("stream", name="stdout", text=(
            "profile: default (params.yaml) | data: data/dataset (companion, simulated data) | writes: "
            + ", ".join(f"figures/04_table3/part{i}" for i in range(8)) + "\n")),
        nbformat.v4.new_output("display_data", data={
            "image/png": base64.b64encode(_png()).decode(), "text/plain": "<Figure>"}),
    ]
    nb.cells = [nbformat.v4.new_markdown_cell("# Demo notebook\n\nSome text."), code]
    nbformat.write(nb, root / "reports" / "notebooks" / "01_demo.ipynb")
    return root


def test_pages_come_from_quarto_yml(tmp_path):
    project = make_project(tmp_path)
    assert [p.as_posix() for p in site_pages(project)] == ["index.qmd", "reports/notebooks/01_demo.ipynb"]


def test_fallback_renders_includes_images_and_hides_code(tmp_path):
    out = build_site(make_project(tmp_path), use_quarto=False)
    index = (out / "index.html").read_text()
    assert "<table>" in index and "NDCG@5" in index
    assert (out / "figures" / "fig.png").exists()
    demo = (out / "reports" / "notebooks" / "01_demo.html").read_text()
    assert "Demo notebook" in demo and "data:image/png;base64" in demo
    assert "secret_code" not in demo  # code cells hidden, as in the Quarto config


def test_missing_include_is_a_clear_error(tmp_path):
    project = make_project(tmp_path)
    (project / "tables" / "t.md").unlink()
    with pytest.raises(MmscaleError, match="include tables/t.md not found"):
        build_site(project, use_quarto=False)
    out = build_site(project, use_quarto=False, strict=False)
    assert "Not built yet" in (out / "index.html").read_text()


def test_site_in_headless_chromium(tmp_path):
    out = build_site(make_project(tmp_path), use_quarto=False)
    stats = check_site(out, tmp_path / "index.png")
    assert stats["pages"] == 2 and stats["images"] >= 2 and stats["links"] >= 3
    assert (tmp_path / "index.png").stat().st_size > 1000


def test_site_checker_catches_a_broken_link(tmp_path):
    project = make_project(tmp_path)
    (project / "index.qmd").write_text("---\ntitle: T\n---\n\n[gone](missing.html)\n")
    out = build_site(project, use_quarto=False)
    with pytest.raises(AssertionError, match="broken link"):
        check_site(out, tmp_path / "shot.png")


LEAKY_PAGES = {
    "stderr (nbconvert)": ('<div class="output_subarea output_stream output_stderr output_text"><pre>'
                           "findfont: Failed to find font weight semibold</pre></div>", "stderr output"),
    "stderr (lab template)": ('<div data-mime-type="application/vnd.jupyter.stderr"><pre>warning</pre></div>',
                              "stderr output"),
    "stderr (quarto)": ('<div class="cell-output cell-output-stderr"><pre>warning</pre></div>', "stderr output"),
    "raw DataFrame": ('<table border="1" class="dataframe"><tr><th>0</th><td>0.841234</td></tr></table>',
                      "raw DataFrame"),
    "NaN": ("<table><tr><td>NDCG@5</td><td>NaN</td></tr></table>", "NaN"),
    "nan": ("<p>0.84 [nan, nan]</p>", "nan"),
    "save call repr": ("<pre>[PosixPath('figures/04_table3/table3.png'), PosixPath('x.svg')]</pre>", "PosixPath("),
    "figure repr": ("<pre>&lt;Figure size 640x480 with 1 Axes&gt;</pre>", "<Figure size"),
    "axes repr": ("<pre>&lt;Axes: title={'center': 'x'}&gt;</pre>", "<Axes:"),
    "series repr": ("<pre>a    1\nName: x, dtype: int64</pre>", "dtype: "),
}


@pytest.mark.parametrize("kind", list(LEAKY_PAGES))
def test_page_leaks_finds_each_kind_of_dump(kind):
    from site_check import page_leaks

    body, expected = LEAKY_PAGES[kind]
    import re
    text = re.sub(r"<[^>]+>", " ", body).replace("&lt;", "<").replace("&gt;", ">")
    leaks = page_leaks(body, text)
    assert leaks and any(expected in leak for leak in leaks), leaks


def test_a_clean_page_has_no_leaks():
    from site_check import page_leaks

    body = "<table><tr><td>NDCG@5</td><td>0.841 [0.800, 0.880] (chance 0.610)</td><td>—</td></tr></table>"
    assert page_leaks(body, "NDCG@5 0.841 [0.800, 0.880] (chance 0.610) — nano Nancy") == []


def test_site_checker_fails_a_page_with_stderr_in_chromium(tmp_path):
    project = make_project(tmp_path)
    nb = nbformat.read(project / "reports" / "notebooks" / "01_demo.ipynb", as_version=4)
    cell = nbformat.v4.new_code_cell("import warnings")
    cell.outputs = [nbformat.v4.new_output("stream", name="stderr", text="findfont: Failed to find font\n")]
    nb.cells.append(cell)
    nbformat.write(nb, project / "reports" / "notebooks" / "01_demo.ipynb")
    out = build_site(project, use_quarto=False)
    with pytest.raises(AssertionError, match="stderr output"):
        check_site(out, tmp_path / "shot.png")
