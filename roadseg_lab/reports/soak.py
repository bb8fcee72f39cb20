"""Compare soak runs (``python -m roadseg_lab soak --out JSON``): a table of
their figures and a plot of resident memory over time, one line per run.

    python -m roadseg_lab soak-report LABEL=runs/soak/a.json LABEL2=runs/soak/b.json ... \
        [--plot docs/img/soak-rss.png] [--markdown out.md]
"""
from __future__ import annotations

import json
from pathlib import Path

from edge_runtime import atomic
from roadseg_lab.tables import table


def _slowest(recoveries: list) -> float:
    return max([x for x in recoveries if x] or [0])


def _first_last(r: dict, key: str) -> str:
    b = r.get("memory_breakdown")
    return f"{b[0][1].get(key)}, {b[-1][1].get(key)}" if b else "n/a"


#: (row label, figure of one run's report)
ROWS = [
    ("minutes, frames, achieved FPS", lambda r: f"{r['minutes']:g}, {r['frames']}, {r['fps_achieved']}"),
    ("API calls (every s), errors, client", lambda r: f"{r['api']['calls']} ({r.get('api_every_s', 5)}), "
                                                    f"{r['api']['errors']}, {r.get('http_client', 'shared')}"),
    ("MALLOC_ARENA_MAX", lambda r: r.get("malloc_arena_max") or "glibc default"),
    ("summaries published / received / lost", lambda r: f"{r['summaries']['published']} / "
                                                      f"{r['summaries']['received']} / {r['summaries']['lost']}"),
    ("broker outages, slowest recovery s", lambda r: f"{r['broker_outages']}, {_slowest(r['broker_recovery_s'])}"),
    ("camera outages, slowest recovery s", lambda r: f"{r['camera_outages']}, {_slowest(r['camera_recovery_s'])}"),
    ("watchdog misses, longest gap s", lambda r: f"{r['watchdog']['misses']}, {r['watchdog']['max_gap_s']}"),
    ("RSS MB: start, after warm-up, end", lambda r: f"{r['rss_mb']['start']}, {r['rss_mb']['after_warmup']}, "
                                                  f"{r['rss_mb']['end']}"),
    ("RSS growth after warm-up, MB/h (least squares)", lambda r: r["rss_growth_mb_per_hour_after_warmup"]),
    ("RSS growth over the last half, MB/h", lambda r: r["rss_growth_mb_per_hour_last_half"]),
    ("C heap MB: first, last sample", lambda r: _first_last(r, "heap")),
    ("threads: first, last sample", lambda r: _first_last(r, "threads")),
    ("all goals met", lambda r: "yes" if all(r["verdict"].values()) else
     "no: " + ", ".join(k for k, v in r["verdict"].items() if not v)),
]


def soak_table(runs: dict[str, dict]) -> str:
    """A Markdown table, one column per run (by label), one row per figure
    of :data:`ROWS`. Raises ``KeyError`` for a report without a figure."""
    cols = list(runs)
    return "\n".join(table(["", *cols], ([name, *(fn(runs[c]) for c in cols)] for name, fn in ROWS)))


def load_runs(items: list[str]) -> dict[str, dict]:
    """``{label: report}`` from ``LABEL=JSON`` items (the label may hold
    ``=``; the path is after the last one). Raises ``ValueError`` for an
    item without a label or path, or a file that cannot be read as JSON."""
    runs = {}
    for item in items:
        label, _, path = item.rpartition("=")
        if not label or not path:
            raise ValueError(f"give LABEL=JSON, not {item!r}")
        try:
            runs[label] = json.loads(Path(path).read_text())
        except (OSError, ValueError) as e:
            raise ValueError(f"cannot read {path}: {e}") from None
    return runs


def plot(runs: dict[str, dict], path: str | Path) -> None:
    """Resident memory over the run (MB from 0, against minutes), one line per
    run in the project's palette, as a PNG at ``path``. A run whose HTTP
    client was ``per-request`` (a new client and TLS context per call, inside
    the measured process) is labelled as the test harness's, not the runtime's."""
    from roadseg_lab.figures import style
    plt = style.pyplot()
    fig, ax = plt.subplots(figsize=(9, 4))
    for i, (label, r) in enumerate(runs.items()):
        t = [s[0] / 60 for s in r["rss_samples"]]
        if r.get("http_client") == "per-request":
            label += " (the test harness's own clients grow, not the runtime)"
        ax.plot(t, [s[1] for s in r["rss_samples"]], label=label, lw=1.2, color=style.series_colour(i))
    ax.set_ylim(0, None)
    ax.set_xlim(0, None)
    ax.set_xlabel("minutes")
    ax.set_ylabel("resident memory of roadseg-run, MB")
    ax.set_title("roadseg-run soak: broker and camera failing, device API in use")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    atomic.save_figure(fig, path)
