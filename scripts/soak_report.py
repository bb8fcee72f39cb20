"""Compare soak runs (scripts/soak.py --out JSON): a table of their figures
and a plot of resident memory over time, one line per run.

    python scripts/soak_report.py LABEL=runs/soak/a.json LABEL2=runs/soak/b.json ... \
        [--plot docs/img/soak-rss.png] [--markdown out.md]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge_runtime import atomic  # noqa: E402


def table(runs: dict[str, dict]) -> str:
    cols = list(runs)
    rows = [
        ("minutes, frames, achieved FPS", lambda r: f"{r['minutes']:g}, {r['frames']}, {r['fps_achieved']}"),
        ("API calls (every s), errors, client", lambda r: f"{r['api']['calls']} ({r.get('api_every_s', 5)}), "
                                                        f"{r['api']['errors']}, {r.get('http_client', 'shared')}"),
        ("MALLOC_ARENA_MAX", lambda r: r.get("malloc_arena_max") or "glibc default"),
        ("summaries published / received / lost", lambda r: f"{r['summaries']['published']} / "
                                                          f"{r['summaries']['received']} / {r['summaries']['lost']}"),
        ("broker outages, slowest recovery s", lambda r: f"{r['broker_outages']}, "
                                                       f"{max([x for x in r['broker_recovery_s'] if x] or [0])}"),
        ("camera outages, slowest recovery s", lambda r: f"{r['camera_outages']}, "
                                                       f"{max([x for x in r['camera_recovery_s'] if x] or [0])}"),
        ("watchdog misses, longest gap s", lambda r: f"{r['watchdog']['misses']}, {r['watchdog']['max_gap_s']}"),
        ("RSS MB: start, after warm-up, end", lambda r: f"{r['rss_mb']['start']}, {r['rss_mb']['after_warmup']}, "
                                                      f"{r['rss_mb']['end']}"),
        ("RSS growth after warm-up, MB/h (least squares)", lambda r: r["rss_growth_mb_per_hour_after_warmup"]),
        ("RSS growth over the last half, MB/h", lambda r: r["rss_growth_mb_per_hour_last_half"]),
        ("C heap MB: first, last sample", lambda r: (f"{r['memory_breakdown'][0][1].get('heap')}, "
                                                     f"{r['memory_breakdown'][-1][1].get('heap')}")
         if r.get("memory_breakdown") else "n/a"),
        ("threads: first, last sample", lambda r: (f"{r['memory_breakdown'][0][1].get('threads')}, "
                                                   f"{r['memory_breakdown'][-1][1].get('threads')}")
         if r.get("memory_breakdown") else "n/a"),
        ("all goals met", lambda r: "yes" if all(r["verdict"].values()) else
         "no: " + ", ".join(k for k, v in r["verdict"].items() if not v)),
    ]
    out = ["| | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, fn in rows:
        out.append(f"| {name} | " + " | ".join(str(fn(runs[c])) for c in cols) + " |")
    return "\n".join(out)


def plot(runs: dict[str, dict], path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(9, 4))
    for label, r in runs.items():
        t = [s[0] / 60 for s in r["rss_samples"]]
        ax.plot(t, [s[1] for s in r["rss_samples"]], label=label, lw=1.2)
    ax.set_xlabel("minutes")
    ax.set_ylabel("resident memory, MB")
    ax.set_title("roadseg-run soak: broker and camera failing, device API in use")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    atomic.save_figure(fig, path)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="soak_report", description=__doc__.split("\n\n")[0], allow_abbrev=False)
    p.add_argument("runs", nargs="+", metavar="LABEL=JSON")
    p.add_argument("--plot")
    p.add_argument("--markdown")
    a = p.parse_args(argv)
    runs = {}
    for item in a.runs:
        label, _, path = item.rpartition("=")
        if not label or not path:
            raise SystemExit(f"soak_report: give LABEL=JSON, not {item!r}")
        try:
            runs[label] = json.loads(Path(path).read_text())
        except (OSError, ValueError) as e:
            raise SystemExit(f"soak_report: cannot read {path}: {e}") from None
    text = table(runs)
    print(text)
    if a.markdown:
        atomic.write_text(a.markdown, text + "\n")
    if a.plot:
        plot(runs, a.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
