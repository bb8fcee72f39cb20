"""``soak-rss.png``: the resident memory of ``roadseg-run`` in the soak runs
of ``docs/measurements/20-soak.md`` (start, after warm-up, end; y from 0),
with each run's growth after warm-up.

The page keeps those three samples and the fitted slopes, not the
per-minute series, so the figure draws what the page reports. The run whose
HTTP client was the old test harness's (a new client per call, inside the
measured process) is left out by default: its growth was the harness's own,
not the runtime's (see the page).
"""
from __future__ import annotations

from pathlib import Path

from roadseg_lab.figures import style
from roadseg_lab.pages import IMG, MEASUREMENTS
from roadseg_lab.tables import read_tables

SOURCE = MEASUREMENTS / "20-soak.md"
RSS_ROW = "RSS MB: start, after warm-up, end"
SLOPE_ROW = "RSS growth after warm-up, MB/h (least squares)"
STAGES = ("start", "after warm-up", "end")
TITLE = ("roadseg-run soak, broker and camera failing, device API in use: resident memory\n"
         "AMD EPYC (2 cores), tiny roadseg-fast int8 at 256x512, 1 thread, 10 FPS target, 2026-11-26")
NOTE = ("Resident memory (RSS) of the roadseg-run process, sampled by python -m roadseg_lab soak, with the broker "
        "stopped for 5 s every minute, the camera unplugged for 4 s every 45 s and an API upload + stats pair every "
        "2 s; numbers: 20-soak.md (docs/RESULTS.md). Left out: the run with the old test harness's new HTTP client per "
        "call (its own allocations grew the C heap, 42 MB/h). Not shown: the per-minute series, runs of days, a Pi "
        "at 30 FPS.")


def read_soak(source: Path = SOURCE, exclude: tuple[str, ...] = ("old harness",)) -> dict[str, dict]:
    """``{run label: {"rss": (start, after warm-up, end) MB, "slope": MB/h}}``
    from the first table of ``source`` with rows headed :data:`RSS_ROW` and
    :data:`SLOPE_ROW`; runs whose label holds one of
    ``exclude`` are left out. Raises ``OSError``/``ValueError`` for a
    missing file, table, row or a cell that is not numbers."""
    tables = [{r[""]: r for r in t} for t in read_tables(Path(source).read_text(), [""])]
    rows = next((t for t in tables if RSS_ROW in t and SLOPE_ROW in t), None)
    if rows is None:
        raise ValueError(f"{source}: no table with a {RSS_ROW!r} and a {SLOPE_ROW!r} row")
    runs = {}
    for label in rows[RSS_ROW]:
        if label and not any(x in label for x in exclude):
            rss = tuple(float(v) for v in rows[RSS_ROW][label].split(","))
            runs[label] = {"rss": rss, "slope": float(rows[SLOPE_ROW][label])}
    return runs


def render(out_dir: Path = IMG, source: Path = SOURCE) -> Path:
    """Draw :func:`read_soak` as grouped bars (one group per run, one bar per
    stage in palette colours, y from 0 MB) with the growth after warm-up
    written above each group; writes ``soak-rss.png`` in ``out_dir`` and
    returns it."""
    runs = read_soak(source)
    plt = style.pyplot()
    fig, ax = plt.subplots(figsize=(9, 4.6))
    width = 0.8 / len(STAGES)
    for j, stage in enumerate(STAGES):
        xs = [i + (j - 1) * width for i in range(len(runs))]
        vals = [r["rss"][j] for r in runs.values()]
        ax.bar(xs, vals, width, color=style.series_colour(j), edgecolor="black", linewidth=0.4, label=stage)
        for x, v in zip(xs, vals):
            ax.text(x, v + 2, f"{v:.0f}", ha="center", fontsize=7)
    for i, r in enumerate(runs.values()):
        ax.text(i, max(r["rss"]) + 10, f"growth after warm-up:\n{r['slope']:+.2f} MB/h", ha="center", fontsize=8)
    ax.set_xticks(range(len(runs)), [label.replace(", ", "\n") for label in runs])
    ax.set_ylim(0, max(max(r["rss"]) for r in runs.values()) * 1.3)
    ax.set_ylabel("resident memory of roadseg-run, MB")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), title="sampled at", fontsize=8, frameon=False)
    ax.set_title(TITLE)
    bottom = style.bottom_margin(fig, style.caption(fig, NOTE), extra_in=0.65)
    fig.subplots_adjust(left=0.08, right=0.84, top=0.86, bottom=bottom)
    return style.save(fig, Path(out_dir) / "soak-rss.png")
