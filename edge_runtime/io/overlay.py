"""The picture people look at: the class map over the frame in the
colour-blind-safe palette, with a legend naming every colour and the FPS.
Used by the preview video, the live MJPEG stream and the API's PNG answer."""
from __future__ import annotations

import cv2
import numpy as np

from edge_runtime.contract.labels import CATEGORIES, PALETTE


def draw_overlay(frame_rgb: np.ndarray, classes: np.ndarray, fps: float | None = None,
                 alpha: float = 0.5) -> np.ndarray:
    """Colour overlay (BGR, for OpenCV writers) with a legend and the FPS."""
    h, w = frame_rgb.shape[:2]
    colour = PALETTE[cv2.resize(classes, (w, h), interpolation=cv2.INTER_NEAREST)]
    out = cv2.addWeighted(frame_rgb, 1 - alpha, colour, alpha, 0)
    out = cv2.cvtColor(out, cv2.COLOR_RGB2BGR)
    y = 14
    for i, c in enumerate(CATEGORIES):  # text beside each colour: readable without colour vision
        b, g, r = (int(v) for v in PALETTE[i][::-1])
        cv2.rectangle(out, (4, y - 9), (16, y + 1), (b, g, r), -1)
        cv2.putText(out, c, (20, y), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 255), 1, cv2.LINE_AA)
        y += 13
    if fps is not None:
        cv2.putText(out, f"{fps:.1f} FPS", (w - 80, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1,
                    cv2.LINE_AA)
    return out


def snapshot_jpeg(frame_rgb: np.ndarray, classes: np.ndarray, fps: float | None = None, max_width: int = 480,
                  max_bytes: int = 64 * 1024) -> bytes:
    """A small JPEG of the overlay with its legend, at most ``max_width``
    pixels wide and ``max_bytes`` long (quality is lowered, then the picture
    halved, until it fits): what a vehicle shows the fleet over MQTT."""
    h, w = frame_rgb.shape[:2]
    if w > max_width:
        frame_rgb = cv2.resize(frame_rgb, (max_width, max(1, round(h * max_width / w))),
                               interpolation=cv2.INTER_AREA)
    img = draw_overlay(frame_rgb, classes, fps)
    while True:
        for quality in (75, 60, 45, 30):
            data = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes()
            if len(data) <= max_bytes:
                return data
        if img.shape[1] <= 64:
            raise ValueError(f"cannot fit a snapshot in {max_bytes} bytes")
        img = cv2.resize(img, (img.shape[1] // 2, img.shape[0] // 2), interpolation=cv2.INTER_AREA)
