"""Deterministic synthetic street scenes: a test fixture and the demo's data
when no dataset is given. Every category is present in every scene at the
default size. Not a dataset to report accuracy on: the scenes are flat
polygons, far easier than real streets.

:func:`synthetic_scene` paints one scene in memory; :func:`write_dataset`
writes many in the Cityscapes or CamVid layout that
:mod:`edge_runtime.eval.datasets` reads.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edge_runtime.contract.labels import CAMVID_TO_CATEGORY

# A raw label value for each category in each on-disk layout: a Cityscapes
# labelId of that category (unlabeled, road, building, pole, vegetation, sky,
# person, car: cityscapesscripts' table), and the first CamVid class that maps
# to it (void: 11, Unlabelled).
_CITYSCAPES_ID = (0, 7, 11, 17, 21, 23, 24, 26)
_CAMVID_ID = tuple(CAMVID_TO_CATEGORY.index(c) if c else 11 for c in range(8))

_BASE_COLOURS = {  # RGB, jittered per scene
    "sky": (135, 185, 235), "building": (140, 120, 110), "road": (90, 90, 95),
    "sidewalk": (170, 160, 150), "tree": (50, 120, 45), "pole": (200, 200, 60),
    "car": (40, 60, 160), "person": (200, 80, 60), "hood": (20, 20, 20),
}


class _Canvas:
    """An image and its category mask painted together, colours drawn from ``rng``."""

    def __init__(self, rng: np.random.Generator, height: int, width: int):
        self.rng, self.h, self.w = rng, height, width
        self.img = np.zeros((height, width, 3), np.uint8)
        self.mask = np.zeros((height, width), np.uint8)

    def colour(self, name: str) -> tuple[int, int, int]:
        base = np.array(_BASE_COLOURS[name], float) * self.rng.uniform(0.75, 1.2)
        return tuple(int(v) for v in np.clip(base + self.rng.normal(0, 8, 3), 0, 255))

    def poly(self, pts, name: str, cat: int) -> None:
        pts = np.round(np.asarray(pts)).astype(np.int32)
        cv2.fillPoly(self.img, [pts], self.colour(name))
        cv2.fillPoly(self.mask, [pts], int(cat))

    def rect(self, x0, y0, x1, y1, name: str, cat: int) -> None:
        self.poly([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], name, cat)


def _sky_and_buildings(c: _Canvas, horizon: int) -> None:
    rng, h, w = c.rng, c.h, c.w
    c.rect(0, 0, w, horizon, "sky", 5)
    # buildings on both sides, up to the horizon and a bit above
    for side in (0, 1):
        x = 0.0 if side == 0 else w * rng.uniform(0.62, 0.72)
        end = w * rng.uniform(0.28, 0.38) if side == 0 else w
        while x < end:
            bw = w * rng.uniform(0.06, 0.14)
            top = horizon - h * rng.uniform(0.1, 0.35)
            c.rect(x, top, min(x + bw, end), horizon + h * 0.08, "building", 2)
            x += bw


def _ground(c: _Canvas, horizon: int, vx: float) -> float:
    """Sidewalk everywhere below the horizon, road as a perspective trapezoid; returns its near half-width."""
    h, w = c.h, c.w
    c.rect(0, horizon, w, h, "sidewalk", 1)
    half_far = w * 0.03
    half_near = w * c.rng.uniform(0.45, 0.7)
    c.poly([(vx - half_far, horizon), (vx + half_far, horizon),
            (vx + half_near, h), (vx - half_near, h)], "road", 1)
    return half_near


def _trees_and_poles(c: _Canvas, horizon: int) -> None:
    rng, h, w = c.rng, c.h, c.w
    for _ in range(rng.integers(2, 4)):  # trees (nature)
        cx = rng.uniform(0.02, 0.98) * w
        cy = horizon - rng.uniform(0.0, 0.15) * h
        r = int(h * rng.uniform(0.06, 0.12))
        cv2.circle(c.img, (int(cx), int(cy)), r, c.colour("tree"), -1)
        cv2.circle(c.mask, (int(cx), int(cy)), r, 4, -1)
        c.rect(cx - r * 0.12, cy, cx + r * 0.12, horizon + h * 0.12, "tree", 4)
    for _ in range(rng.integers(1, 3)):  # poles with a sign (object)
        px = rng.choice([rng.uniform(0.05, 0.3), rng.uniform(0.7, 0.95)]) * w
        c.rect(px - 2, horizon - h * 0.2, px + 2, horizon + h * 0.25, "pole", 3)
        c.rect(px - h * 0.04, horizon - h * 0.24, px + h * 0.04, horizon - h * 0.16, "pole", 3)


def _road_users(c: _Canvas, horizon: int, vx: float, half_near: float) -> None:
    rng, h, w = c.rng, c.h, c.w
    for _ in range(rng.integers(1, 4)):  # cars on the road, smaller near the horizon
        t = rng.uniform(0.15, 0.8)
        y = horizon + t * (h - horizon) * 0.85
        cw = w * 0.06 + t * w * 0.22
        ch = cw * rng.uniform(0.45, 0.6)
        x = vx + rng.uniform(-0.8, 0.8) * t * half_near - cw / 2
        c.rect(x, y - ch, x + cw, y, "car", 7)
        c.rect(x + cw * 0.15, y - ch * 1.35, x + cw * 0.85, y - ch, "car", 7)
    for _ in range(rng.integers(1, 4)):  # people on the sidewalks
        t = rng.uniform(0.1, 0.7)
        y = horizon + t * (h - horizon)
        ph = h * (0.06 + 0.25 * t)
        x = rng.choice([rng.uniform(0.03, 0.2), rng.uniform(0.8, 0.97)]) * w
        centre, axes = (int(x), int(y - ph / 2)), (max(2, int(ph * 0.18)), int(ph / 2))
        cv2.ellipse(c.img, centre, axes, 0, 0, 360, c.colour("person"), -1)
        cv2.ellipse(c.mask, centre, axes, 0, 0, 360, 6, -1)


def synthetic_scene(seed: int, height: int = 256, width: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """Paint one street scene as seen from a car, with its exact labels.

    Sky, buildings (construction), sidewalk and a perspective road (flat),
    trees (nature), poles with signs (object), cars (vehicle), people (human)
    and the ego vehicle's hood (void), then a vertical shading ramp and Gaussian
    sensor noise (sigma 6 grey levels) on the image only. Every drawing choice
    comes from ``numpy.random.default_rng(seed)``, so a seed always gives the
    same scene on any machine with the same NumPy and OpenCV.

    Args:
        seed: any integer accepted by ``numpy.random.default_rng``.
        height, width: the scene's size in pixels (the default is the
            project's 256x512 model input).

    Returns:
        ``(image, mask)``: RGB uint8 [height, width, 3] and category indices
        uint8 [height, width] (0..7, :data:`~edge_runtime.contract.labels.CATEGORIES`).
        At small sizes some categories may be painted over or absent.

    Raises:
        cv2.error: ``height`` or ``width`` is 0.
        ValueError: ``height`` or ``width`` is negative (from NumPy).
    """
    rng = np.random.default_rng(seed)
    c = _Canvas(rng, height, width)
    horizon = int(height * rng.uniform(0.38, 0.5))
    vx = width * rng.uniform(0.4, 0.6)  # vanishing point's column
    _sky_and_buildings(c, horizon)
    half_near = _ground(c, horizon, vx)
    _trees_and_poles(c, horizon)
    _road_users(c, horizon, vx, half_near)
    hood = height * rng.uniform(0.05, 0.1)  # ego-vehicle hood: void
    c.poly([(width * 0.1, height), (width * 0.25, height - hood),
            (width * 0.75, height - hood), (width * 0.9, height)], "hood", 0)
    # texture and sensor noise so the task is not trivially colour lookup
    noise = rng.normal(0, 6, c.img.shape)
    shade = np.linspace(rng.uniform(0.85, 1.0), rng.uniform(1.0, 1.15), height)[:, None, None]
    img = np.clip(c.img * shade + noise, 0, 255).astype(np.uint8)
    return img, c.mask


def write_dataset(root: str | Path, layout: str = "cityscapes", splits: dict[str, int] | None = None,
                  height: int = 256, width: int = 512, seed: int = 0) -> Path:
    """Write synthetic scenes to disk in the Cityscapes or CamVid layout, so
    every tool reads them exactly like a real dataset.

    Cityscapes: ``leftImg8bit/<split>/synth/synth_<i:06d>_000019_leftImg8bit.png``
    with ``gtFine/<split>/synth/..._gtFine_labelIds.png`` (labelIds).
    CamVid: ``<split>/synth_<i:05d>.png`` with ``<split>annot/synth_<i:05d>.png``
    (SegNet class indices). Images are 8-bit RGB PNGs, labels 8-bit
    single-channel PNGs. Scene seeds run from ``seed * 100003`` upwards
    through all splits in order, so no two frames repeat across splits of
    one call. Existing files of the same name are overwritten; files are
    written in place (not atomically) and ``cv2.imwrite``'s result is not
    checked.

    Args:
        root: the dataset folder, created if missing.
        layout: ``"cityscapes"`` or ``"camvid"``.
        splits: frames per split name; default ``{"train": 48, "val": 12}``.
        height, width: frame size in pixels.
        seed: the dataset's seed (integer).

    Returns:
        ``Path(root)``.

    Raises:
        KeyError: ``layout`` is neither ``"cityscapes"`` nor ``"camvid"``.
        OSError: a folder cannot be created.
        cv2.error, ValueError: as :func:`synthetic_scene` for a bad size.
    """
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
