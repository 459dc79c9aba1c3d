"""Figures and tables as files, each stamped with where its numbers come from.

Every number the report shows is one of three provenances, and the report
must say which: the paper itself, this companion on the simulator, or this
companion on real data. Figures get PNG (for the site) and SVG (for papers);
tables get CSV (for tools) and Markdown (for people), all written atomically.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from mmscale_core.io import atomic_path, write_text

if TYPE_CHECKING:  # only for annotations: ``mmscale notebook`` imports this module and needs no pandas
    import pandas as pd

PROVENANCE = {
    "paper": "paper (transcribed)",
    "simulated": "companion, simulated data",
    "real": "companion, real data",
}


class SavedFiles(list):
    """The paths a save call wrote: a plain list, which a notebook cell ending in the call does
    not print (the figure or table is already on the page; ``[PosixPath(...)]`` is noise)."""

    def _ipython_display_(self) -> None:
        return None


def provenance_label(kind: str) -> str:
    try:
        return PROVENANCE[kind]
    except KeyError:
        raise ValueError(f"provenance must be one of {', '.join(PROVENANCE)}, not {kind!r}") from None


def data_provenance(profile: dict) -> str:
    """'simulated' or 'real' for a params profile, from its data source (a directory the
    simulator wrote, e.g. with ``--layout upstream``, carries its ``simulation.json``)."""
    data = profile.get("data", {})
    if data.get("source") == "simulate":
        return "simulated"
    written_by_simulator = data.get("dir") and (Path(data["dir"]).expanduser() / "simulation.json").is_file()
    return "simulated" if written_by_simulator else "real"


def save_figure(fig, name: str, provenance: str, out_dir: str | Path = "figures",
                dpi: int = 150) -> SavedFiles:
    """Write ``fig`` as NAME.png and NAME.svg with a provenance footnote in the corner."""
    out_dir = Path(out_dir)
    stamp = provenance_label(provenance) if provenance == "paper" else f"companion numbers: {provenance} data"
    fig.text(0.995, 0.005, stamp, ha="right", va="bottom", fontsize=7, color="0.45")
    paths = SavedFiles()
    for ext in ("png", "svg"):
        target = out_dir / f"{name}.{ext}"
        with atomic_path(target) as tmp:
            fig.savefig(tmp, format=ext, dpi=dpi, bbox_inches="tight")
        paths.append(target)
    return paths


def _markdown_cells(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` as NAME.md shows it: an undefined number (NaN: a Kendall tau of constant scores, a
    metric with no positives) is a dash, as on the site, not "nan" (tabulate prints its ``missingval``
    for None only), and a count column (``n``, ``n_*``) that pandas made float by its missing cells
    stays a count."""
    import pandas as pd

    if not frame.isna().to_numpy().any():
        return frame
    shown = frame.astype(object).where(frame.notna(), None)
    for column in frame.columns:
        values = frame[column].dropna()
        is_count = str(column) == "n" or str(column).startswith("n_")  # n, n_lists, n_boot, ...
        if is_count and pd.api.types.is_float_dtype(frame[column]) and len(values) and (values % 1 == 0).all():
            shown[column] = pd.Series([None if v is None else int(v) for v in shown[column]], index=shown.index,
                                      dtype=object)
    return shown


def save_table(frame: pd.DataFrame, name: str, out_dir: str | Path = "tables",
               caption: str | None = None, floatfmt: str = ".3f") -> SavedFiles:
    """Write NAME.csv and NAME.md. The frame must carry a ``source`` column (see ``PROVENANCE``)."""
    if "source" not in frame.columns:
        raise ValueError(f"table {name!r} needs a 'source' column saying where each number comes from")
    out_dir = Path(out_dir)
    csv_path, md_path = out_dir / f"{name}.csv", out_dir / f"{name}.md"
    with atomic_path(csv_path) as tmp:
        frame.to_csv(tmp, index=False)
    md = _markdown_cells(frame).to_markdown(index=False, floatfmt=floatfmt, missingval="—")  # display.MISSING
    write_text(md_path, (f"{caption}\n\n" if caption else "") + md + "\n")
    return SavedFiles([csv_path, md_path])
