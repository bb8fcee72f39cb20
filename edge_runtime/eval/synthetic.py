"""Deterministic synthetic street scenes: a test fixture and the demo's data
when no dataset is given. Every category is present in every scene. Not a
dataset to report accuracy on."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edge_runtime.contract.labels import CAMVID_TO_CATEGORY

# A raw label value for each category in each on-disk layout.
_CITYSCAPES_ID = (0, 7, 11, 17, 21, 23, 24, 26)
_CAMVID_ID = tuple(CAMVID_TO_CATEGORY.index(c) if c else 11 for c in range(8))

_BASE_COLOURS = {  # RGB, jittered per scene
    "sky": (135, 185, 235), "building": (140, 120, 110), "road": (90, 90, 95),
    "sidewalk": (170, 160, 150), "tree": (50, 120, 45), "pole": (200, 200, 60),
    "car": (40, 60, 160), "person": (200, 80, 60), "hood": (20, 20, 20),
}


def synthetic_scene(seed: int, height: int = 256, width: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(image RGB uint8 [H,W,3], category mask uint8 [H,W])``."""
    rng = np.random.default_rng(seed)
    h, w = height, width
    img = np.zeros((h, w, 3), np.uint8)
    mask = np.zeros((h, w), np.uint8)

    def colour(name: str) -> tuple[int, int, int]:
        base = np.array(_BASE_COLOURS[name], float) * rng.uniform(0.75, 1.2)
        return tuple(int(v) for v in np.clip(base + rng.normal(0, 8, 3), 0, 255))

    def fill_poly(pts, name, cat):
        pts = np.round(np.asarray(pts)).astype(np.int32)
        cv2.fillPoly(img, [pts], colour(name))
        cv2.fillPoly(mask, [pts], int(cat))

    def fill_rect(x0, y0, x1, y1, name, cat):
        fill_poly([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], name, cat)

    horizon = int(h * rng.uniform(0.38, 0.5))
    vx = w * rng.uniform(0.4, 0.6)
    fill_rect(0, 0, w, horizon, "sky", 5)
    # buildings on both sides, up to the horizon and a bit above
    for side in (0, 1):
        x = 0.0 if side == 0 else w * rng.uniform(0.62, 0.72)
        end = w * rng.uniform(0.28, 0.38) if side == 0 else w
        while x < end:
            bw = w * rng.uniform(0.06, 0.14)
            top = horizon - h * rng.uniform(0.1, 0.35)
            fill_rect(x, top, min(x + bw, end), horizon + h * 0.08, "building", 2)
            x += bw
    # ground: sidewalk everywhere below the horizon, road as a perspective trapezoid
    fill_rect(0, horizon, w, h, "sidewalk", 1)
    half_far = w * 0.03
    half_near = w * rng.uniform(0.45, 0.7)
    fill_poly([(vx - half_far, horizon), (vx + half_far, horizon),
               (vx + half_near, h), (vx - half_near, h)], "road", 1)
    # trees (nature) and poles/signs (object)
    for _ in range(rng.integers(2, 4)):
        cx = rng.uniform(0.02, 0.98) * w
        cy = horizon - rng.uniform(0.0, 0.15) * h
        r = int(h * rng.uniform(0.06, 0.12))
        c = colour("tree")
        cv2.circle(img, (int(cx), int(cy)), r, c, -1)
        cv2.circle(mask, (int(cx), int(cy)), r, 4, -1)
        fill_rect(cx - r * 0.12, cy, cx + r * 0.12, horizon + h * 0.12, "tree", 4)
    for _ in range(rng.integers(1, 3)):
        px = rng.choice([rng.uniform(0.05, 0.3), rng.uniform(0.7, 0.95)]) * w
        fill_rect(px - 2, horizon - h * 0.2, px + 2, horizon + h * 0.25, "pole", 3)
        fill_rect(px - h * 0.04, horizon - h * 0.24, px + h * 0.04, horizon - h * 0.16, "pole", 3)
    # cars on the road, smaller near the horizon
    for _ in range(rng.integers(1, 4)):
        t = rng.uniform(0.15, 0.8)
        y = horizon + t * (h - horizon) * 0.85
        cw = w * 0.06 + t * w * 0.22
        ch = cw * rng.uniform(0.45, 0.6)
        x = vx + rng.uniform(-0.8, 0.8) * t * half_near - cw / 2
        fill_rect(x, y - ch, x + cw, y, "car", 7)
        fill_rect(x + cw * 0.15, y - ch * 1.35, x + cw * 0.85, y - ch, "car", 7)
    # people on the sidewalks
    for _ in range(rng.integers(1, 4)):
        t = rng.uniform(0.1, 0.7)
        y = horizon + t * (h - horizon)
        ph = h * (0.06 + 0.25 * t)
        x = rng.choice([rng.uniform(0.03, 0.2), rng.uniform(0.8, 0.97)]) * w
        c = colour("person")
        cv2.ellipse(img, (int(x), int(y - ph / 2)), (max(2, int(ph * 0.18)), int(ph / 2)), 0, 0, 360, c, -1)
        cv2.ellipse(mask, (int(x), int(y - ph / 2)), (max(2, int(ph * 0.18)), int(ph / 2)), 0, 0, 360, 6, -1)
    # ego-vehicle hood: void
    hood = h * rng.uniform(0.05, 0.1)
    fill_poly([(w * 0.1, h), (w * 0.25, h - hood), (w * 0.75, h - hood), (w * 0.9, h)], "hood", 0)

    # texture and sensor noise so the task is not trivially colour lookup
    noise = rng.normal(0, 6, img.shape)
    shade = np.linspace(rng.uniform(0.85, 1.0), rng.uniform(1.0, 1.15), h)[:, None, None]
    img = np.clip(img * shade + noise, 0, 255).astype(np.uint8)
    return img, mask


def write_dataset(root: str | Path, layout: str = "cityscapes", splits: dict[str, int] | None = None,
                  height: int = 256, width: int = 512, seed: int = 0) -> Path:
    """Write synthetic scenes to disk in the Cityscapes or CamVid layout, so
    every tool reads them exactly like a real dataset."""
    root = Path(root)
    splits = splits or {"train": 48, "val": 12}
    ids = {"cityscapes": _CITYSCAPES_ID, "camvid": _CAMVID_ID}[layout]
    lut = np.array(ids, np.uint8)
    k = seed * 100_003
    for split, n in splits.items():
        for i in range(n):
            img, mask = synthetic_scene(k, height, width)
            k += 1
            raw = lut[mask]
            if layout == "cityscapes":
                city = "synth"
                stem = f"{city}_{i:06d}_000019"
                ip = root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png"
                lp = root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png"
            else:
                ip = root / split / f"synth_{i:05d}.png"
                lp = root / f"{split}annot" / f"synth_{i:05d}.png"
            ip.parent.mkdir(parents=True, exist_ok=True)
            lp.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(ip), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
            cv2.imwrite(str(lp), raw)
    return root
