"""The paper's figures, drawn from tidy frames with seaborn/matplotlib.

Each function takes a tidy frame (one row per bar/point) and returns a
``Figure``; notebooks save it with :func:`mmscale_core.outputs.save_figure`,
which stamps its provenance. Conventions: paper values are drawn hatched/grey
next to the companion's, intervals are 95% bootstrap CIs, and ranking metrics
carry their chance level as a dashed line so "0.84" is never read alone.
"""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

MODALITY_ORDER = ("text", "image", "both")
MODALITY_COLORS = {"text": "#4C72B0", "image": "#DD8452", "both": "#55A868"}
PAPER_COLOR = "#9a9a9a"


def use_style() -> None:
    sns.set_theme(context="notebook", style="whitegrid", font_scale=0.95)
    # "bold", not "semibold": DejaVu Sans (matplotlib's bundled font) has no 600 weight, and asking
    # for one prints a findfont warning into every page that draws a title
    plt.rcParams.update({"figure.dpi": 110, "axes.titleweight": "bold", "axes.spines.right": False,
                         "axes.spines.top": False})


use_style()


def _errorbars(ax, x, frame: pd.DataFrame, color="black") -> None:
    if {"ci_low", "ci_high"} <= set(frame.columns):
        lo = frame["value"] - frame["ci_low"]
        hi = frame["ci_high"] - frame["value"]
        ax.errorbar(x, frame["value"], yerr=[lo.clip(lower=0), hi.clip(lower=0)], fmt="none",
                    ecolor=color, elinewidth=1, capsize=3)


def rating_distribution(ratings: pd.DataFrame) -> plt.Figure:
    """Fig. 5: ratings 1-5 by the modality that informed each rating, plus modality shares.

    ``ratings``: one row per rating with columns ``rating`` and ``modality``.
    """
    fig, (ax, pie) = plt.subplots(1, 2, figsize=(10, 3.8), gridspec_kw={"width_ratios": [2.2, 1]})
    counts = ratings.groupby(["rating", "modality"]).size().rename("n").reset_index()
    sns.barplot(counts, x="rating", y="n", hue="modality", hue_order=MODALITY_ORDER,
                palette=MODALITY_COLORS, ax=ax)
    ax.set(xlabel="moral acceptability rating (1 = very unacceptable, 5 = very acceptable)",
           ylabel="ratings", title="Ratings by grounding modality")
    shares = ratings["modality"].value_counts().reindex(MODALITY_ORDER).fillna(0)
    pie.pie(shares, labels=shares.index, colors=[MODALITY_COLORS[m] for m in shares.index],
            autopct="%1.1f%%", startangle=90, wedgeprops={"linewidth": 1, "edgecolor": "white"})
    pie.set_title("Modality reliance")
    fig.tight_layout()
    return fig


def grouped_counts(frame: pd.DataFrame, x: str, hue: str, title: str, xlabel: str,
                   hue_order: Sequence[str] | None = None, palette=None, y: str = "n") -> plt.Figure:
    """Bars of counts (or shares) by ``x`` and ``hue`` (Fig. 6a/6b, Table 2 as a picture)."""
    fig, ax = plt.subplots(figsize=(7, 3.8))
    sns.barplot(frame, x=x, y=y, hue=hue, hue_order=hue_order, palette=palette, ax=ax)
    for container in ax.containers:
        ax.bar_label(container, fmt="%.0f" if y == "n" else "%.2f", fontsize=7, padding=1)
    ax.set(title=title, xlabel=xlabel, ylabel=y)
    fig.tight_layout()
    return fig


def paper_vs_companion(frame: pd.DataFrame, title: str, ylabel: str = "share") -> plt.Figure:
    """Side-by-side bars: ``item`` on x, ``source`` as hue (paper grey), optional CIs.

    ``frame`` columns: item, source, value, optional ci_low/ci_high.
    """
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * frame["item"].nunique() + 2), 3.8))
    sources = list(dict.fromkeys(frame["source"]))
    palette = {s: (PAPER_COLOR if s.startswith("paper") else sns.color_palette()[i])
               for i, s in enumerate(sources)}
    sns.barplot(frame, x="item", y="value", hue="source", hue_order=sources, palette=palette, ax=ax,
                errorbar=None)
    items = list(dict.fromkeys(frame["item"]))
    width = 0.8 / len(sources)
    for j, s in enumerate(sources):
        sub = frame[frame["source"] == s].set_index("item").reindex(items)
        x = np.arange(len(items)) - 0.4 + width * (j + 0.5)
        _errorbars(ax, x, sub.reset_index())
    ax.set(title=title, xlabel="", ylabel=ylabel)
    ax.tick_params(axis="x", rotation=20)
    ax.legend(title=None, fontsize=8)
    fig.tight_layout()
    return fig


def metric_curves(frame: pd.DataFrame, x: str, title: str, xlabel: str,
                  metrics: Sequence[str] = ("NDCG@5", "Unsafe Rate"), hue: str | None = None) -> plt.Figure:
    """Fig. 8: metric vs ``x`` (list size m, training fraction f) with CI bands and chance lines.

    ``frame`` columns: x, metric, value, ci_low, ci_high, optional chance and ``hue``.
    """
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.2 * len(metrics), 3.6), squeeze=False)
    for ax, name in zip(axes[0], metrics):
        sub = frame[frame["metric"] == name]
        groups = sub.groupby(hue, sort=False) if hue else [(None, sub)]
        for label, g in groups:
            g = g.sort_values(x)
            line, = ax.plot(g[x], g["value"], marker="o", label=label)
            ax.fill_between(g[x], g["ci_low"], g["ci_high"], alpha=0.2, color=line.get_color())
        if "chance" in sub.columns and sub["chance"].notna().any():
            ch = sub.groupby(x)["chance"].mean().sort_index()
            ax.plot(ch.index, ch.values, ls="--", color="0.4", lw=1, label="chance")
        ax.set(title=name, xlabel=xlabel, ylabel=name)
        values = pd.to_numeric(sub[x], errors="coerce").dropna().unique()
        if len(values) and (values == values.round()).all():  # list sizes: ticks at the sizes, not 1.5
            ax.set_xticks(sorted(values))
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def reliability_diagram(curves: pd.DataFrame, title: str = "Reliability diagram",
                        uncalibrated: pd.DataFrame | None = None) -> plt.Figure:
    """Fig. 9a: observed vs predicted acceptability per objective; the diagonal is perfect calibration.

    ``curves`` columns: objective, predicted, observed, count. With ``uncalibrated`` (same
    columns, the scores before any isotonic map) a second panel shows those curves, because
    an isotonic map fitted on the training split puts its objective near the diagonal by
    construction and the first panel alone would hide how the objective itself is calibrated.
    """
    panels = [(curves, "as evaluated (isotonic map where no 1-5 scale)")]
    if uncalibrated is not None:
        panels.append((uncalibrated, "uncalibrated scores"))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.8 * len(panels), 4.6), squeeze=False, sharey=True)
    for ax, (frame, subtitle) in zip(axes[0], panels):
        ax.plot([0, 1], [0, 1], ls="--", color="0.5", lw=1, label="perfect calibration")
        for name, g in frame.groupby("objective", sort=False):
            ax.plot(g["predicted"], g["observed"], marker="o", label=name)
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="predicted acceptability", ylabel="observed acceptability",
               title=subtitle if len(panels) > 1 else title)
        ax.legend(fontsize=8)
    if len(panels) > 1:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def paper_vs_companion_panels(frame: pd.DataFrame, title: str, metrics: Sequence[str] | None = None) -> plt.Figure:
    """Small multiples of Table 3: one panel per metric, objectives on x, one bar per source.

    ``frame`` columns: metric, objective (a display label), source, value, optional ci_low/ci_high
    and chance (drawn as a short dashed line over each companion bar). The legend sits below
    the panels, never over the bars.
    """
    metrics = list(metrics or dict.fromkeys(frame["metric"]))
    sources = list(dict.fromkeys(frame["source"]))
    objectives = list(dict.fromkeys(frame["objective"]))
    colors = iter(sns.color_palette())
    palette = {s: PAPER_COLOR if s.startswith("paper") else next(colors) for s in sources}
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.2 * len(metrics), 3.6), squeeze=False)
    width = 0.8 / len(sources)
    for ax, metric in zip(axes[0], metrics):
        sub = frame[frame["metric"] == metric]
        for j, source in enumerate(sources):
            part = sub[sub["source"] == source].set_index("objective").reindex(objectives)
            x = np.arange(len(objectives)) - 0.4 + width * (j + 0.5)
            ax.bar(x, part["value"], width=width, color=palette[source], label=source,
                   hatch="//" if source.startswith("paper") else None, edgecolor="white")
            _errorbars(ax, x, part.reset_index())
            if "chance" in part.columns and part["chance"].notna().any():
                ax.hlines(part["chance"], x - width / 2, x + width / 2, colors="0.2", linestyles="--", lw=1,
                          label="chance" if j == len(sources) - 1 else None)
        ax.set_xticks(np.arange(len(objectives)), objectives, rotation=30, ha="right", fontsize=8)
        ax.set(title=metric, xlabel="", ylabel="")
    handles, labels = axes[0][0].get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    fig.legend(unique.values(), unique.keys(), loc="lower center", ncol=min(4, len(unique)), fontsize=8,
               frameon=False, bbox_to_anchor=(0.5, -0.02))
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    return fig


def safety_threshold_curves(table: pd.DataFrame, title: str, mark: float | None = None,
                            metrics: Sequence[str] = ("Unsafe Rate", "AUC-Safety")) -> plt.Figure:
    """Sec. 5.2: Unsafe Rate and AUC-Safety vs the unsafe threshold t, one line per objective.

    ``table`` columns: threshold, objective (a label), metric, value, ci_low, ci_high, chance.
    CI bands per objective; each objective's chance level as a dotted line of its colour (the
    chance Unsafe Rate depends on the objective's own score distribution); ``mark`` draws a
    vertical line at the paper's threshold.
    """
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.2 * len(metrics), 3.8), squeeze=False)
    for ax, name in zip(axes[0], metrics):
        sub = table[table["metric"] == name]
        for label, g in sub.groupby("objective", sort=False):
            g = g.sort_values("threshold")
            line, = ax.plot(g["threshold"], g["value"], marker="o", label=label)
            ax.fill_between(g["threshold"], g["ci_low"], g["ci_high"], alpha=0.15, color=line.get_color())
            if g["chance"].notna().any():
                ax.plot(g["threshold"], g["chance"], ls=":", lw=1.2, color=line.get_color())
        if mark is not None:
            ax.axvline(mark, color="0.3", lw=1, ls="--", label=f"paper's t = {mark:g}")
        ax.plot([], [], ls=":", color="0.4", label="chance (dotted, per objective)")
        ax.set(title=name, xlabel="unsafe threshold t (human score <= t is unsafe)", ylabel=name)
        ax.set_xticks(sorted(sub["threshold"].unique()))
        ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def metric_bars(frame: pd.DataFrame, x: str, title: str, ylabel: str, hue: str | None = None) -> plt.Figure:
    """Bars with CIs (Fig. 9b ECE per objective, Fig. 3 synthetic vs photo)."""
    fig, ax = plt.subplots(figsize=(max(5, 1.1 * frame[x].nunique() + 2), 3.6))
    sns.barplot(frame, x=x, y="value", hue=hue, ax=ax, errorbar=None)
    if hue is None:
        _errorbars(ax, np.arange(len(frame)), frame.reset_index(drop=True))
    ax.set(title=title, xlabel="", ylabel=ylabel)
    fig.tight_layout()
    return fig


def forest(comparisons: pd.DataFrame, title: str = "Paired differences (95% CI)") -> plt.Figure:
    """Forest plot of paired metric differences (reference - other) from ``metrics.compare``.

    One panel per metric; rows are "reference vs other" (per backbone when a
    ``backbone`` column is present); a dashed line at 0 marks "no difference".
    """
    metrics = list(dict.fromkeys(comparisons["metric"]))
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.3 * len(metrics), 0.45 * len(comparisons) / len(metrics) + 1.6),
                             sharey=True, squeeze=False)
    labels = comparisons.apply(
        lambda r: (f"{r['backbone']}: " if "backbone" in r else "") + f"{r['reference']} vs {r['other']}", axis=1)
    comparisons = comparisons.assign(label=labels)
    for ax, name in zip(axes[0], metrics):
        sub = comparisons[comparisons["metric"] == name].reset_index(drop=True)
        y = np.arange(len(sub))
        ax.errorbar(sub["diff"], y, xerr=[sub["diff"] - sub["ci_low"], sub["ci_high"] - sub["diff"]],
                    fmt="o", color="black", ecolor="0.3", capsize=3)
        ax.axvline(0, ls="--", color="0.5", lw=1)
        ax.set_yticks(y, sub["label"])
        ax.set_title(name)
        ax.invert_yaxis()
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def directional_shifts(frame: pd.DataFrame) -> plt.Figure:
    """Fig. 6b: up/down counts per modality, one panel per NormBank label (+1 should, -1 should not).

    ``frame`` columns: modality, normbank_label, direction, n.
    """
    labels = [(1, '+1 "you should"'), (-1, '-1 "you should not"')]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    for ax, (label, title) in zip(axes, labels):
        sub = frame[frame["normbank_label"] == label]
        sns.barplot(sub, x="modality", y="n", hue="direction", hue_order=["up", "down"], order=MODALITY_ORDER,
                    palette={"up": "#55A868", "down": "#C44E52"}, ax=ax)
        for container in ax.containers:
            ax.bar_label(container, fmt="%.0f", fontsize=7, padding=1)
        ax.set(title=title, xlabel="grounding modality", ylabel="scenarios")
    fig.suptitle("Fig. 6b: direction of the shift by NormBank label")
    fig.tight_layout()
    return fig
