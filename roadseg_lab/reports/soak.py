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


#: the fault schedule's kinds as the tables name them (roadseg_lab.checks.soak.FAULTS)
FAULT_NAMES = {"disk-full": "disk full (offline queue)", "read-only": "read-only (heartbeat)",
               "slow-fsync": "slow fsync, broker stopped", "camera-hang": "hanging camera",
               "clock-step": "wall clock a year ahead and back", "twin": "twin vehicle on the device id"}


def _s(x) -> str:
    return "never" if x is None else f"{x:g}"


def _fault_cell(r: dict, kind: str) -> str:
    f = r.get("faults")
    if not f or kind not in f["scheduled"]:
        return "n/a"
    if kind in f["not_injected"]:
        return f"not injected: {f['not_injected'][kind]}"
    k = f["by_kind"][kind]
    shown = (_s(k["max_visible_s"]) if k["shown_in_status"] else "nothing to show" if k["max_visible_s"] is None
             else f"nothing to show (in the summaries' ts after {_s(k['max_visible_s'])})")
    return f"{k['count']}, {shown}, {_s(k['max_recovered_s'])}"


def _slow_fps(r: dict) -> str:
    slow = [e["fps_during"] for e in (r.get("faults") or {}).get("events", []) if e["fault"] == "slow-fsync"]
    return f"{min(slow):g} (run {r['fps_achieved']})" if slow else "n/a"


def _uptimes(r: dict) -> str:
    u = (r.get("faults") or {}).get("uptime_range_s") or {}
    return "; ".join(f"{k} {_s(lo)} to {_s(hi)}" for k, (lo, hi) in u.items()) or "n/a"


def fault_rows(runs: dict[str, dict]) -> list[tuple]:
    """Rows for the fault schedule (issue 31), one per kind scheduled in any run
    (times, slowest to the status in s, slowest recovery in s), then the
    slowest to the status over all faults (goal: 5 s), the lowest frame rate
    during a slow fsync and the uptimes /v1/stats gave; none when no run had a schedule."""
    scheduled = [k for k in FAULT_NAMES if any(k in (r.get("faults") or {}).get("scheduled", ()) for r in runs.values())]
    if not scheduled:
        return []
    rows = [(f"fault: {FAULT_NAMES[k]}: times, slowest to status s, slowest recovery s",
             lambda r, k=k: _fault_cell(r, k)) for k in scheduled]
    rows += [("faults: slowest to status s (goal 5)", lambda r: _s((r.get("faults") or {}).get("max_visible_s"))
              if r.get("faults") else "n/a"),
             ("FPS during a slow fsync, lowest", _slow_fps),
             ("uptime_s from /v1/stats, lowest to highest", _uptimes),
             ("loop stalls (no frame for 20 s, camera live)", lambda r: r.get("loop_stalls", "n/a"))]
    return rows


def fault_events_table(label: str, report: dict) -> str:
    """A Markdown table of one run's faults in time order: when (minutes
    into the run), which, seconds to the status, to recovery, and what the
    kind adds. Empty when the run had no schedule."""
    events = (report.get("faults") or {}).get("events") or []
    if not events:
        return ""
    extras = ("bit_after_s", "fps_during", "start_s", "yielded", "exit_code", "cut_by_run_end")
    lines = table([f"{label}: minute", "fault", "to status s", "recovered s", "notes"],
                  ([f"{e['at_s'] / 60:.1f}", FAULT_NAMES.get(e["fault"], e["fault"]),
                    _s(e["visible_s"]) if e["fault"] not in ("slow-fsync",) else "nothing to show",
                    _s(e["recovered_s"]), ", ".join([f"{k} {e[k]}" for k in extras if k in e]
                                                    + (["to the summaries' ts"] if e["fault"] == "clock-step" else []))]
                   for e in events))
    return "\n".join(lines)


def soak_table(runs: dict[str, dict]) -> str:
    """A Markdown table, one column per run (by label), one row per figure
    of :data:`ROWS` (with :func:`fault_rows` before the verdict when a run
    had a fault schedule, and each such run's :func:`fault_events_table`
    after it). Raises ``KeyError`` for a report without a figure."""
    cols = list(runs)
    rows = ROWS[:-1] + fault_rows(runs) + ROWS[-1:]
    text = "\n".join(table(["", *cols], ([name, *(fn(runs[c]) for c in cols)] for name, fn in rows)))
    events = [t for t in (fault_events_table(c, runs[c]) for c in cols) if t]
    return "\n\n".join([text, *events])


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


#: a marker per fault kind on the memory plot
FAULT_MARKERS = {"disk-full": "v", "read-only": "^", "slow-fsync": "s", "camera-hang": "x", "clock-step": "D",
                 "twin": "*"}


def _mark_faults(ax, report: dict, run_index: int) -> None:
    """The run's faults as markers on its memory line (at the sample nearest each), one legend entry per kind."""
    samples = report["rss_samples"]
    events = (report.get("faults") or {}).get("events") or []
    if not samples or not events:
        return
    from roadseg_lab.figures import style
    seen = set()
    for e in events:
        t, rss = min(samples, key=lambda x: abs(x[0] - e["at_s"]))
        kind = e["fault"]
        ax.plot(t / 60, rss, FAULT_MARKERS.get(kind, "o"), ms=6, mfc="none", color=style.series_colour(run_index),
                label=None if kind in seen else FAULT_NAMES.get(kind, kind))
        seen.add(kind)


def plot(runs: dict[str, dict], path: str | Path) -> None:
    """Resident memory over the run (MB from 0, against minutes), one line per
    run in the project's palette, its faults (if scheduled) as markers on
    its line, as a PNG at ``path``. A run whose HTTP
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
        _mark_faults(ax, r, i)
    ax.set_ylim(0, None)
    ax.set_xlim(0, None)
    ax.set_xlabel("minutes")
    ax.set_ylabel("resident memory of roadseg-run, MB")
    faults = any(r.get("faults") for r in runs.values())
    ax.set_title("roadseg-run soak: broker and camera failing" + (", faults (markers)" if faults else "")
                 + ", device API in use")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    atomic.save_figure(fig, path)
