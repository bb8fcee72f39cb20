"""The pure parts of the lab's checks: the aarch64 output agreement and the soak's verdict."""
from __future__ import annotations

import numpy as np

from roadseg_lab.checks.aarch64 import agreement
from roadseg_lab.checks.soak import slope_mb_per_hour, verdict


def test_agreement_counts_steps_and_explains_flips_by_near_ties():
    x86 = np.zeros((1, 2, 2, 3), np.int8)
    x86[..., 0] = 10  # class 0 everywhere, by 10 steps...
    x86[0, 1, 1] = (5, 4, 0)  # ...except one near-tie: 1 step
    same = x86.copy()
    assert agreement(x86, same) == (0, 1.0, True)
    flipped = x86.copy()
    flipped[0, 1, 1] = (4, 5, 0)  # the near-tie flips: one step each way
    steps, frac, explained = agreement(x86, flipped)
    assert steps == 1 and frac == 0.75 and explained
    x86[0, 0, 0] = (10, 7, 0)
    wrong = x86.copy()
    wrong[0, 0, 0] = (8, 9, 0)  # 2 steps each way flip a pixel whose x86 margin is 3: more than the steps
    steps, _, explained = agreement(x86, wrong)
    assert steps == 2 and explained is False


def test_soak_verdict_and_slope():
    assert slope_mb_per_hour([(0, 1.0), (1800, 1.5)]) is None
    assert abs(slope_mb_per_hour([(0, 100.0), (1800, 100.5), (3600, 101.0)]) - 1.0) < 1e-9
    good = {"rss_growth_mb_per_hour_after_warmup": 0.3, "summaries": {"lost": 0}, "broker_recovery_s": [1.0],
            "camera_recovery_s": [0.5], "watchdog": {"misses": 0}}
    assert all(verdict(good).values())
    bad = dict(good, rss_growth_mb_per_hour_after_warmup=None, broker_recovery_s=[1.0, None])
    v = verdict(bad)
    assert not v["rss_growth_below_1_mb_per_hour"] and not v["broker_recovery_below_5_s"] and v["no_summary_lost"]
