"""The pure parts of the lab's checks: the aarch64 output agreement and the soak's verdict."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from roadseg_lab.checks.aarch64 import TIE_STEPS, Flip, agreement
from roadseg_lab.checks.soak import slope_mb_per_hour, verdict

ROOT = Path(__file__).resolve().parents[2]


def test_agreement_judges_the_argmax_where_x86_is_clear_and_names_the_near_ties():
    x86 = np.zeros((1, 2, 3, 3), np.int8)
    x86[..., 0] = 40  # class 0 everywhere, by 40 steps...
    x86[0, 1, 1] = (5, 4, 0)  # ...except a near-tie: 1 step
    x86[0, 0, 2] = (9, 0, 3)  # ...and one decided by 6 steps over class 2, 9 over class 1
    a = agreement(x86, x86.copy())
    assert (a.steps, a.same, a.flips, a.ok) == (0, 1.0, (), True)
    arm = x86.copy()
    arm[0, 1, 1] = (1, 8, 0)  # 4 steps each way, as arm64's kernels on the shipped model: the near-tie flips
    arm[0, 0, 2] = (6, 0, 7)  # 6 steps of margin: within the tolerance, a near-tie too
    a = agreement(x86, arm)
    assert a.steps == 4 and a.same == 4 / 6 and a.ok and a.decided == ()
    assert a.flips == (Flip(0, 2, 0, 2, 6), Flip(1, 1, 0, 1, 1))  # where, which classes, why: clearest first
    text = a.describe(("void", "flat", "sky"))
    assert "2 differ, 2 of them near-ties" in text and "(1, 1) void -> flat by 1" in text and "void -> sky by 6" in text
    assert "x86 was clear" not in text
    arm[0, 0, 0] = (20, 0, 30)  # a pixel x86 gave class 0 by 40 steps: arm64 computes something else
    a = agreement(x86, arm)
    assert not a.ok and a.decided == (Flip(0, 0, 0, 2, 40),)
    assert "1 where x86 was clear (margin above 8 steps)" in a.describe() and "(0, 0) 0 -> 2 by 40" in a.describe()
    with pytest.raises(ValueError):
        agreement(x86, x86[..., :2])


def test_agreement_on_the_shipped_model_passes_with_a_few_steps_of_noise():
    """The shipped model's own x86 output against a copy moved by up to 4 int8 steps per value (what arm64
    gave, docs/measurements/40-aarch64.md): the check passes, and every differing pixel is a named near-tie."""
    from edge_runtime.models import default_model
    from roadseg_lab.checks.aarch64 import raw_output
    x86 = raw_output(str(default_model()))
    noise = np.random.default_rng(0).integers(-4, 5, x86.shape)
    arm = np.clip(x86.astype(np.int32) + noise, -128, 127).astype(x86.dtype)
    a = agreement(x86, arm)
    assert a.steps <= 4 and a.ok and a.flips and all(f.margin <= TIE_STEPS for f in a.flips)
    assert f"{len(a.flips)} differ, {len(a.flips)} of them near-ties" in a.describe()


def test_test_aarch64_sh_parses_and_takes_no_fixed_port():
    script = ROOT / "scripts" / "test_aarch64.sh"
    r = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    import roadseg_lab.checks.aarch64 as check
    source = Path(check.__file__).read_text() + script.read_text()
    assert "free_port()" in source and not re.search(r"\b18[89]\d\d\b", source)


def test_soak_verdict_and_slope():
    assert slope_mb_per_hour([(0, 1.0), (1800, 1.5)]) is None
    assert abs(slope_mb_per_hour([(0, 100.0), (1800, 100.5), (3600, 101.0)]) - 1.0) < 1e-9
    good = {"rss_growth_mb_per_hour_after_warmup": 0.3, "summaries": {"lost": 0}, "broker_recovery_s": [1.0],
            "camera_recovery_s": [0.5], "watchdog": {"misses": 0}}
    assert all(verdict(good).values())
    bad = dict(good, rss_growth_mb_per_hour_after_warmup=None, broker_recovery_s=[1.0, None])
    v = verdict(bad)
    assert not v["rss_growth_below_1_mb_per_hour"] and not v["broker_recovery_below_5_s"] and v["no_summary_lost"]
