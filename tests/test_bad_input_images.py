"""The one image decoder (datasets.base.to_uint8_image): each Pillow mode a dataset may ship,
written by Pillow to a real file, decoded and compared with the array worked out by hand."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ferbench.datasets.base import UnsupportedImage, open_image, to_uint8_image
from ferbench.errors import FerbenchError


def _saved(tmp_path: Path, image: Image.Image, name: str = "x.png", **options) -> Path:
    path = tmp_path / name
    image.save(path, **options)
    return path


def test_16bit_grey_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 1000, 32896], [65535, 257, 40000]], dtype=np.uint16)
    path = _saved(tmp_path, Image.fromarray(values))
    assert Image.open(path).mode == "I;16"
    # round(v * 255 / 65535): 1000 -> 3.89 -> 4, 32896 = 128 * 257 -> 128, 40000 -> 155.6 -> 156
    expected = np.array([[0, 4, 128], [255, 1, 156]], dtype=np.uint8)
    np.testing.assert_array_equal(open_image(path), expected)


def test_16bit_png_caches_the_same_face_as_its_8bit_twin(tmp_path):
    rng = np.random.default_rng(0)
    eight = rng.integers(0, 256, size=(24, 20), dtype=np.uint8)
    # a 16-bit scan of the same face: each level v at v * 257, give or take half a level
    noise = rng.integers(-128, 129, size=eight.shape)
    sixteen = np.clip(eight.astype(np.int64) * 257 + noise, 0, 65535).astype(np.uint16)
    a = open_image(_saved(tmp_path, Image.fromarray(eight), "a.png"))
    b = open_image(_saved(tmp_path, Image.fromarray(sixteen), "b.png"))
    assert b.dtype == np.uint8 and b.shape == a.shape
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_8bit_grey_rgb_and_1bit_as_stored(tmp_path):
    grey = np.array([[0, 17, 255]], np.uint8)
    np.testing.assert_array_equal(open_image(_saved(tmp_path, Image.fromarray(grey), "l.png")), grey)
    rgb = np.array([[[1, 2, 3], [250, 128, 0]]], np.uint8)
    np.testing.assert_array_equal(open_image(_saved(tmp_path, Image.fromarray(rgb), "rgb.png")), rgb)
    bits = Image.new("1", (3, 1))
    bits.putdata([0, 1, 0])
    path = _saved(tmp_path, bits, "one.png")
    assert Image.open(path).mode == "1"
    np.testing.assert_array_equal(open_image(path), [[0, 255, 0]])


def test_mode_I_in_16bit_range_and_big_endian(tmp_path):
    values = np.array([[0, 65535, 514]], dtype=np.int32)
    path = _saved(tmp_path, Image.fromarray(values, mode="I"), "i.tif")
    assert Image.open(path).mode == "I"
    np.testing.assert_array_equal(open_image(path), np.array([[0, 255, 2]], np.uint8))
    big = Image.frombytes("I;16B", (2, 1), np.array([[65535, 32896]], dtype=">u2").tobytes())
    np.testing.assert_array_equal(to_uint8_image(big, "mem"), np.array([[255, 128]], np.uint8))


def test_grey_and_colour_palettes(tmp_path):
    grey = Image.new("P", (3, 1))
    grey.putpalette([v for g in range(256) for v in (g, g, g)])
    grey.putdata([0, 7, 200])
    np.testing.assert_array_equal(open_image(_saved(tmp_path, grey, "g.png")), [[0, 7, 200]])
    colour = Image.new("P", (2, 1))
    colour.putpalette([10, 20, 30, 200, 100, 0] + [0] * 762)
    colour.putdata([1, 0])
    np.testing.assert_array_equal(open_image(_saved(tmp_path, colour, "c.png")),
                                  [[[200, 100, 0], [10, 20, 30]]])


def test_rgba_and_la_are_composited_over_black(tmp_path):
    rgba = Image.fromarray(np.array([[[200, 100, 50, 128], [255, 255, 255, 0], [9, 8, 7, 255]]],
                                    np.uint8), mode="RGBA")
    # 200 * 128 / 255 = 100.4 -> 100, 100 -> 50.2 -> 50, 50 -> 25.1 -> 25; alpha 0 -> black
    expected = np.array([[[100, 50, 25], [0, 0, 0], [9, 8, 7]]], np.uint8)
    np.testing.assert_array_equal(open_image(_saved(tmp_path, rgba, "rgba.png")), expected)
    la = Image.fromarray(np.array([[[200, 64], [90, 255]]], np.uint8), mode="LA")
    # 200 * 64 / 255 = 50.2 -> 50
    np.testing.assert_array_equal(open_image(_saved(tmp_path, la, "la.png")), [[50, 90]])


def test_cmyk(tmp_path):
    cmyk = Image.new("CMYK", (2, 1))
    cmyk.putpixel((0, 0), (100, 0, 0, 100))
    cmyk.putpixel((1, 0), (0, 50, 200, 30))
    # R = (255 - C)(255 - K) / 255: 155 * 155 / 255 = 94.2; 205 * 225 / 255 = 180.9; 55 * 225 / 255 = 48.5
    expected = np.array([[[94, 155, 155], [225, 181, 49]]], np.uint8)
    np.testing.assert_array_equal(open_image(_saved(tmp_path, cmyk, "k.tif")), expected)


def test_exif_orientation_turns_the_image_upright(tmp_path):
    stored = np.array([[1, 2, 3], [4, 5, 6]], np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned: rotate 90 degrees clockwise to display
    path = _saved(tmp_path, Image.fromarray(stored), "o.png", exif=exif)
    np.testing.assert_array_equal(open_image(path), [[4, 1], [5, 2], [6, 3]])
    plain = _saved(tmp_path, Image.fromarray(stored), "p.png")
    np.testing.assert_array_equal(open_image(plain), stored)


def test_other_modes_are_unsupported_naming_the_mode(tmp_path):
    path = _saved(tmp_path, Image.fromarray(np.ones((2, 2), np.float32), mode="F"), "f.tif")
    with pytest.raises(UnsupportedImage, match=r"f\.tif: unsupported image mode F") as info:
        open_image(path)
    assert info.value.reason == "unsupported image mode F"
    again = pickle.loads(pickle.dumps(info.value))  # crosses prepare's worker processes
    assert again.reason == info.value.reason and str(again) == str(info.value)
    outside = _saved(tmp_path, Image.fromarray(np.array([[-5, 70000]], np.int32), mode="I"), "i.tif")
    with pytest.raises(UnsupportedImage, match="outside 0..65535"):
        open_image(outside)


def test_a_truncated_file_is_unreadable(tmp_path):
    noise = np.random.default_rng(1).integers(0, 256, size=(64, 64), dtype=np.uint8)
    path = _saved(tmp_path, Image.fromarray(noise), "t.png")
    path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(FerbenchError, match="t.png: unreadable image"):
        open_image(path)
