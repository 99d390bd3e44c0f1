"""Where the face of one image is, and its square crop: the per-image part of ``ferbench prepare``
(ferbench.data.prepare runs it over the whole sample table).

Where the face is (first that applies; precropped datasets skip straight to ``whole``):
  landmarks  bounding box of the row's landmark points
  box        the row's [x, y, w, h]
  detector   OpenCV's bundled Haar cascade (frontal face, default), largest face
  center     the detector found nothing: the centred square of side min(H, W) (counted)
  whole      precropped images: the whole image, zero-padded to a square
The crop is a square of side ``max(w, h) * (1 + 2 * margin)`` centred on the face box. Along an
axis where the square fits inside the image it is shifted inside (no artificial border);
where it does not fit it stays centred and the outside is zero-padded.
"""

from __future__ import annotations

import os
import threading
from typing import Any, Callable, Sequence

import cv2
import numpy as np

from ferbench.errors import FerbenchError

CROP_METHODS = ("landmarks", "box", "detector", "center", "whole")
#: Images are shrunk to at most this side before running the Haar cascade (speed; faces in
#: these datasets are large).
DETECT_MAX_SIDE = 480

Box = tuple[float, float, float, float]


# -- geometry ---------------------------------------------------------------------------------
def _finite_box(box: Any) -> Box | None:
    if box is None:
        return None
    try:
        values = np.asarray(box, dtype=float).reshape(-1)
    except (TypeError, ValueError):
        return None
    if values.size != 4 or not np.all(np.isfinite(values)) or values[2] <= 0 or values[3] <= 0:
        return None
    return tuple(float(v) for v in values)  # type: ignore[return-value]


def landmark_box(landmarks: Any) -> Box | None:
    """Flat [x0, y0, x1, y1, ...] -> the points' bounding box (x, y, w, h); None if unusable."""
    if landmarks is None:
        return None
    try:
        pts = np.asarray(landmarks, dtype=float).reshape(-1)
    except (TypeError, ValueError):
        return None
    if pts.size < 4 or pts.size % 2:
        return None
    pts = pts.reshape(-1, 2)
    pts = pts[np.all(np.isfinite(pts), axis=1)]
    if len(pts) < 2:
        return None
    x0, y0 = pts.min(axis=0)
    x1, y1 = pts.max(axis=0)
    return _finite_box((x0, y0, x1 - x0, y1 - y0))


def _overlaps(box: Box, shape: tuple[int, ...]) -> bool:
    x, y, w, h = box
    return x < shape[1] and y < shape[0] and x + w > 0 and y + h > 0


def square_region(box: Box, margin: float, shape: tuple[int, ...]) -> tuple[int, int, int]:
    """Face box -> integer square (x0, y0, side) in image coordinates (may extend outside)."""
    x, y, w, h = box
    side = max(1, int(round(max(w, h) * (1.0 + 2.0 * margin))))
    cx, cy = x + w / 2.0, y + h / 2.0
    x0 = int(round(cx - side / 2.0))
    y0 = int(round(cy - side / 2.0))
    height, width = shape[:2]
    if side <= width:
        x0 = min(max(x0, 0), width - side)
    if side <= height:
        y0 = min(max(y0, 0), height - side)
    return x0, y0, side


def crop_square(image: np.ndarray, x0: int, y0: int, side: int) -> np.ndarray:
    """image[y0:y0+side, x0:x0+side], zero-padded where the square leaves the image."""
    height, width = image.shape[:2]
    if 0 <= x0 and 0 <= y0 and x0 + side <= width and y0 + side <= height:
        return image[y0:y0 + side, x0:x0 + side]
    canvas = np.zeros((side, side) + image.shape[2:], dtype=image.dtype)
    sx0, sy0 = max(x0, 0), max(y0, 0)
    sx1, sy1 = min(x0 + side, width), min(y0 + side, height)
    if sx1 > sx0 and sy1 > sy0:
        canvas[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = image[sy0:sy1, sx0:sx1]
    return canvas


def resize_square(crop: np.ndarray, size: int) -> np.ndarray:
    side = crop.shape[0]
    if side == size:
        return np.ascontiguousarray(crop)
    interp = cv2.INTER_AREA if side > size else cv2.INTER_CUBIC
    return cv2.resize(crop, (size, size), interpolation=interp)


# -- detection --------------------------------------------------------------------------------
class HaarDetector:
    """OpenCV's bundled frontal-face cascade, one classifier per thread (it is not thread-safe)."""

    path = os.path.join(cv2.data.haarcascades, "haarcascade_frontalface_default.xml")

    def __init__(self) -> None:
        self._local = threading.local()

    def __getstate__(self) -> dict:  # sent to worker processes: each loads its own cascade
        return {}

    def __setstate__(self, state: dict) -> None:
        self._local = threading.local()

    def _cascade(self) -> cv2.CascadeClassifier:
        cascade = getattr(self._local, "cascade", None)
        if cascade is None:
            cascade = cv2.CascadeClassifier(self.path)
            if cascade.empty():
                raise FerbenchError(f"{self.path}: OpenCV's Haar face cascade could not be loaded")
            self._local.cascade = cascade
        return cascade

    def __call__(self, grey: np.ndarray) -> Box | None:
        """Largest detected face (x, y, w, h) in ``grey``'s coordinates, or None."""
        scale = min(1.0, DETECT_MAX_SIDE / max(grey.shape[:2]))
        small = grey if scale == 1.0 else cv2.resize(
            grey, (max(1, round(grey.shape[1] * scale)), max(1, round(grey.shape[0] * scale))),
            interpolation=cv2.INTER_AREA)
        small = cv2.equalizeHist(small)
        min_side = max(24, min(small.shape[:2]) // 8)
        faces = self._cascade().detectMultiScale(small, scaleFactor=1.1, minNeighbors=5,
                                                 minSize=(min_side, min_side))
        if len(faces) == 0:
            return None
        x, y, w, h = max((tuple(int(v) for v in f) for f in faces), key=lambda f: f[2] * f[3])
        return (x / scale, y / scale, w / scale, h / scale)


# -- one image --------------------------------------------------------------------------------
def _normalise(image: np.ndarray, channels: int, where: str) -> np.ndarray:
    """Reader pixels -> uint8 HxW (grey) or HxWx3 (RGB; only when channels == 3 and colour)."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise FerbenchError(f"{where}: reader returned {image.dtype} pixels, expected uint8")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    elif image.ndim == 3 and image.shape[2] == 4:
        image = image[:, :, :3]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
        raise FerbenchError(f"{where}: reader returned pixels of shape {image.shape}, expected HxW or HxWx3")
    if image.ndim == 3 and channels == 1:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    return image


def locate_face(
    image: np.ndarray,
    landmarks: Any = None,
    box: Any = None,
    *,
    precropped: bool = False,
    detector: Callable[[np.ndarray], Box | None] | None = None,
) -> tuple[Box, str]:
    """The face box and how it was found (one of CROP_METHODS)."""
    height, width = image.shape[:2]
    if precropped:
        return (0.0, 0.0, float(width), float(height)), "whole"
    found = landmark_box(landmarks)
    if found is not None and _overlaps(found, image.shape):
        return found, "landmarks"
    found = _finite_box(box)
    if found is not None and _overlaps(found, image.shape):
        return found, "box"
    if detector is not None:
        grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        found = detector(grey)
        if found is not None:
            return found, "detector"
    side = float(min(height, width))
    return ((width - side) / 2.0, (height - side) / 2.0, side, side), "center"


def crop_face(image: np.ndarray, sizes: Sequence[int], **options: Any) -> tuple[list[np.ndarray], str]:
    """One image -> ([uint8 C x size x size per size], crop method). Crops once, resizes per size."""
    faces, method, _ = crop_face_region(image, sizes, **options)
    return faces, method


def crop_face_region(
    image: np.ndarray,
    sizes: Sequence[int],
    *,
    landmarks: Any = None,
    box: Any = None,
    channels: int = 3,
    margin: float = 0.2,
    precropped: bool = False,
    detector: Callable[[np.ndarray], Box | None] | None = None,
    where: str = "image",
) -> tuple[list[np.ndarray], str, tuple[int, int, int]]:
    """crop_face, plus the square (x0, y0, side) it cut from the image (for ``points_to_crop``)."""
    image = _normalise(image, channels, where)
    face, method = locate_face(image, landmarks, box, precropped=precropped, detector=detector)
    # precropped and centre fallbacks are exact squares/whole images: no margin around them
    m = margin if method in ("landmarks", "box", "detector") else 0.0
    x0, y0, side = square_region(face, m, image.shape)
    crop = crop_square(image, x0, y0, side)
    out = []
    for size in sizes:
        face_px = resize_square(crop, size)
        if face_px.ndim == 2:
            face_px = face_px[None] if channels == 1 else np.broadcast_to(face_px, (3,) + face_px.shape)
        else:
            face_px = face_px.transpose(2, 0, 1)
        out.append(np.ascontiguousarray(face_px))
    return out, method, (x0, y0, side)


def points_to_crop(landmarks: Any, region: tuple[int, int, int], points: int) -> np.ndarray:
    """Flat image landmarks [x0, y0, x1, y1, ...] -> float32 [points, 2] fractions of the crop
    square ``region`` = (x0, y0, side): (x - x0 + 0.5) / side, pixel centres at integers as in
    the image (the resize maps centres to centres). NaN when there are no points or another
    number of them."""
    out = np.full((points, 2), np.nan, dtype=np.float32)
    if landmarks is None or points == 0:
        return out
    try:
        pts = np.asarray(landmarks, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        return out
    if pts.size != 2 * points:
        return out
    x0, y0, side = region
    pts = pts.reshape(points, 2)
    out[:] = (pts - np.array([x0, y0], dtype=np.float64) + 0.5) / side
    return out
