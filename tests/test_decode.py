"""Own images are decoded as a viewer shows them, the paper sets as the official code does (dataloader/decode.py).

Every expected pixel is computed here from the values written into the file, with the rule stated in the
module docstring, in exact integer / fraction arithmetic (never by calling the code under test).
"""
from __future__ import annotations

import struct
import zlib
from fractions import Fraction

import numpy as np
import pytest
from PIL import Image

from dataloader.decode import DEFAULT_MAX_PIXELS, OFFICIAL, VIEWER, Decoding, ImageTooLarge, decode_file, \
    open_image, viewer_rgb
from dataloader.files import FileImagesWithDecoding, UnreadableImage
from dataloader.image_check import find_unreadable
from fixtures_data import make_cfg
from utils.training.config import OPTION_BY_NAME
from utils.core.errors import ConfigError

@pytest.fixture(autouse=True)
def pillow_limit():
    """Decoding sets Pillow's process-wide pixel limit; the tests after these find it as it was."""
    saved = Image.MAX_IMAGE_PIXELS
    yield
    Image.MAX_IMAGE_PIXELS = saved


WHITE, BLACK = (255, 255, 255), (0, 0, 0)


def viewer(path, background="white", max_pixels=DEFAULT_MAX_PIXELS) -> np.ndarray:
    return np.asarray(decode_file(str(path), Decoding(VIEWER, background=background, max_pixels=max_pixels)))


def official(path) -> np.ndarray:
    return np.asarray(decode_file(str(path), Decoding(OFFICIAL)))


def over(colour, alpha, background) -> tuple[int, ...]:
    """A colour with alpha (0-255) over an opaque background, rounded to the nearest integer."""
    alpha = int(alpha)  # Python integers: numpy's uint8 would wrap
    return tuple(round(Fraction(alpha * int(c) + (255 - alpha) * b, 255)) for c, b in zip(colour, background))


def test_exif_orientation_6_jpeg_is_shown_turned_clockwise(tmp_path):
    # stored 32 wide x 16 high: left half red, right half blue; orientation 6 = "rotate 90 degrees clockwise"
    stored = np.zeros((16, 32, 3), dtype=np.uint8)
    stored[:, :16] = (200, 0, 0)
    stored[:, 16:] = (0, 0, 200)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "turned.jpg"
    Image.fromarray(stored).save(path, exif=exif, quality=95)
    raw = official(path)  # the stored pixels as decoded (JPEG is lossy), unrotated
    assert raw.shape == (16, 32, 3)
    shown = viewer(path)
    assert shown.shape == (32, 16, 3)
    np.testing.assert_array_equal(shown, np.rot90(raw, k=-1))  # k=-1: clockwise
    # clockwise: the stored left (red) half becomes the top half
    assert np.abs(shown[:12].astype(int) - (200, 0, 0)).max() <= 8
    assert np.abs(shown[20:].astype(int) - (0, 0, 200)).max() <= 8


def strokes_rgba() -> np.ndarray:
    """Dark strokes on a transparent background, with a half-transparent anti-aliased edge."""
    rgba = np.zeros((8, 8, 4), dtype=np.uint8)  # transparent black
    rgba[2, :] = (20, 30, 40, 255)               # an opaque stroke
    rgba[3, :] = (20, 30, 40, 128)               # its anti-aliased edge
    rgba[5, 1] = (250, 0, 0, 1)                  # nearly invisible
    return rgba


@pytest.mark.parametrize("background, rgb", [("white", WHITE), ("black", BLACK), ("#336699", (0x33, 0x66, 0x99))])
def test_rgba_png_is_composited_onto_the_background(tmp_path, background, rgb):
    path = tmp_path / "strokes.png"
    rgba = strokes_rgba()
    Image.fromarray(rgba, mode="RGBA").save(path)
    shown = viewer(path, background)
    expected = np.array([[over(p[:3], p[3], rgb) for p in row] for row in rgba], dtype=np.uint8)
    np.testing.assert_array_equal(shown, expected)
    assert tuple(shown[0, 0]) == rgb and tuple(shown[2, 0]) == (20, 30, 40)
    assert tuple(shown[3, 0]) == over((20, 30, 40), 128, rgb)
    if background == "white":  # the official decoding: transparent black stays black (the reported bug)
        assert tuple(official(path)[0, 0]) == BLACK and tuple(shown[3, 0]) == (137, 142, 147)


def test_la_png_is_composited_like_rgba(tmp_path):
    la = np.zeros((4, 4, 2), dtype=np.uint8)
    la[1] = (10, 255)
    la[2] = (10, 64)
    path = tmp_path / "la.png"
    Image.fromarray(la, mode="LA").save(path)
    assert Image.open(path).mode == "LA"
    shown = viewer(path)
    expected = np.array([[over((g, g, g), a, WHITE) for g, a in row] for row in la], dtype=np.uint8)
    np.testing.assert_array_equal(shown, expected)
    assert tuple(shown[0, 0]) == WHITE and tuple(shown[1, 0]) == (10, 10, 10)


def test_palette_png_with_a_transparent_index(tmp_path):
    palette = [0, 0, 0, 255, 0, 0, 0, 128, 0] + [0] * (256 * 3 - 9)  # index 0 (transparent), 1 red, 2 green
    index = np.array([[0, 1, 2], [2, 1, 0]], dtype=np.uint8)
    img = Image.fromarray(index, mode="P")
    img.putpalette(palette)
    path = tmp_path / "palette.png"
    img.save(path, transparency=0)
    assert Image.open(path).mode == "P" and Image.open(path).info["transparency"] == 0
    colours = {0: WHITE, 1: (255, 0, 0), 2: (0, 128, 0)}
    expected = np.array([[colours[i] for i in row] for row in index], dtype=np.uint8)
    np.testing.assert_array_equal(viewer(path), expected)
    colours[0] = (1, 2, 3)
    expected = np.array([[colours[i] for i in row] for row in index], dtype=np.uint8)
    np.testing.assert_array_equal(viewer(path, "#010203"), expected)


@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_greyscale_and_rgb_png_with_a_transparent_colour(tmp_path, mode):
    """PNG's tRNS chunk for L and RGB: the one stated colour is transparent, the others opaque."""
    grey = np.array([[0, 50, 200]], dtype=np.uint8)
    path = tmp_path / f"{mode}.png"
    if mode == "L":
        Image.fromarray(grey, mode="L").save(path, transparency=50)
    else:
        Image.fromarray(np.repeat(grey[..., None], 3, axis=2)).save(path, transparency=(50, 50, 50))
    assert Image.open(path).mode == mode and "transparency" in Image.open(path).info
    assert viewer(path, "#010203").tolist() == [[[0, 0, 0], [1, 2, 3], [200, 200, 200]]]


def png_16_bit_rgb(path, pixels) -> None:
    """A 16-bit-per-channel RGB PNG written byte by byte (Pillow cannot write one)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    rows = b"".join(b"\x00" + b"".join(struct.pack(">HHH", *p) for p in row) for row in pixels)
    header = struct.pack(">IIBBBBB", len(pixels[0]), len(pixels), 16, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
                     + chunk(b"IEND", b""))


def test_16_bit_colour_png_keeps_pillows_high_byte(tmp_path):
    """What the module docstring states: Pillow hands over v // 256 (not clipped, at most 1 below rounding)."""
    pixels = [[(65535, 32768, 255), (257, 128, 40000)]]
    path = tmp_path / "rgb16.png"
    png_16_bit_rgb(path, pixels)
    assert viewer(path).tolist() == [[[v // 256 for v in p] for p in row] for row in pixels]
    assert viewer(path).tolist() == [[[255, 128, 0], [1, 0, 156]]]


SIXTEEN = np.array([[0, 1, 128, 129], [257, 1000, 32767, 32768], [65280, 65534, 65535, 40000]], dtype=np.uint16)


def scaled(values) -> np.ndarray:
    """round(v * 255 / 65535), exact."""
    return np.array([[round(Fraction(int(v) * 255, 65535)) for v in row] for row in values], dtype=np.uint8)


@pytest.mark.parametrize("ext", [".png", ".tif"])
def test_16_bit_greyscale_is_scaled_not_clipped(tmp_path, ext):
    path = tmp_path / f"grey16{ext}"
    Image.fromarray(SIXTEEN).save(path)
    assert Image.open(path).mode.startswith("I")
    grey = scaled(SIXTEEN)
    assert grey.tolist() == [[0, 0, 0, 1], [1, 4, 127, 128], [254, 255, 255, 156]]
    np.testing.assert_array_equal(viewer(path), np.repeat(grey[..., None], 3, axis=2))
    assert official(path).max() == 255 and official(path)[0, 3, 0] == 129  # the official decoding clips


def test_16_bit_big_endian_and_32_bit_modes_in_memory():
    big = Image.frombytes("I;16B", (4, 3), SIXTEEN.astype(">u2").tobytes())
    np.testing.assert_array_equal(np.asarray(viewer_rgb(big))[..., 0], scaled(SIXTEEN))
    wide = np.array([[-5, 0, 65535, 70000]], dtype=np.int32)  # mode I: clipped to 0..65535 first
    shown = np.asarray(viewer_rgb(Image.fromarray(wide, mode="I")))
    assert shown[..., 0].tolist() == [[0, 0, 255, 255]] and shown.shape == (1, 4, 3)


CMYK = np.array([[(0, 0, 0, 0), (255, 0, 0, 0), (0, 0, 0, 255)],
                 [(100, 50, 200, 30), (10, 20, 30, 40), (255, 255, 255, 255)]], dtype=np.uint8)


def cmyk_expected(cmyk) -> np.ndarray:
    """R = round((255 - C) * (255 - K) / 255); G from M, B from Y."""
    return np.array([[[round(Fraction((255 - int(p[ch])) * (255 - int(p[3])), 255)) for ch in range(3)] for p in row]
                     for row in cmyk], dtype=np.uint8)


def test_cmyk_tiff(tmp_path):
    path = tmp_path / "cmyk.tif"
    Image.fromarray(CMYK, mode="CMYK").save(path)
    expected = cmyk_expected(CMYK)
    assert expected[0].tolist() == [[255, 255, 255], [0, 255, 255], [0, 0, 0]]
    assert expected[1, 0].tolist() == [137, 181, 49]
    np.testing.assert_array_equal(viewer(path), expected)


def test_cmyk_jpeg(tmp_path):
    path = tmp_path / "cmyk.jpg"
    flat = np.broadcast_to(np.array((100, 50, 200, 30), dtype=np.uint8), (16, 16, 4))
    Image.fromarray(np.ascontiguousarray(flat), mode="CMYK").save(path, quality=100)
    stored = np.asarray(Image.open(path))  # the CMYK values as decoded (lossy), Adobe inversion undone by Pillow
    assert Image.open(path).mode == "CMYK" and np.abs(stored.astype(int) - (100, 50, 200, 30)).max() <= 2
    np.testing.assert_array_equal(viewer(path), cmyk_expected(stored))
    assert np.abs(viewer(path).astype(int) - (137, 181, 49)).max() <= 3


@pytest.mark.parametrize("mode", ["L", "1", "P"])
def test_greyscale_bilevel_and_palette(tmp_path, mode):
    grey = np.array([[0, 60, 200, 255]], dtype=np.uint8)
    if mode == "L":
        img, expected = Image.fromarray(grey, mode="L"), [[(g, g, g) for g in grey[0]]]
    elif mode == "1":
        img, expected = Image.fromarray(grey >= 128), [[(0, 0, 0), (0, 0, 0), (255, 255, 255), (255, 255, 255)]]
    else:
        img = Image.fromarray(np.array([[0, 1, 2, 1]], dtype=np.uint8), mode="P")
        img.putpalette([9, 8, 7, 100, 150, 200, 1, 2, 3] + [0] * (253 * 3))
        expected = [[(9, 8, 7), (100, 150, 200), (1, 2, 3), (100, 150, 200)]]
    path = tmp_path / f"{mode}.png"
    img.save(path)
    assert Image.open(path).mode == mode
    assert viewer(path).tolist() == [list(map(list, row)) for row in expected]


def test_image_files_decode_officially_unless_told(tmp_path):
    path = tmp_path / "strokes.png"
    Image.fromarray(strokes_rgba(), mode="RGBA").save(path)
    paper = FileImagesWithDecoding([str(path)])  # how every paper data set builds its images
    assert paper.decoding.name == OFFICIAL and tuple(np.asarray(paper.load(0))[0, 0]) == BLACK
    own = FileImagesWithDecoding([str(path)], decoding=Decoding(VIEWER))
    assert tuple(np.asarray(own.load(0))[0, 0]) == WHITE


# ------------------------------------------------------------------------------------------ the pixel limit

def test_pixel_limit_default_is_pillows_and_config_agrees():
    assert DEFAULT_MAX_PIXELS == Image.MAX_IMAGE_PIXELS == 89_478_485 == OPTION_BY_NAME["max_image_pixels"].default
    assert make_cfg(max_image_pixels=0).max_image_pixels == 0
    assert make_cfg(max_image_pixels=None).max_image_pixels is None
    with pytest.raises(ConfigError, match=r"^config key 'max_image_pixels' \(from test\) must be >= 0, got -1$"):
        make_cfg(max_image_pixels=-1)


def test_background_is_a_training_setting_the_pixel_limit_is_not():
    """--resume refuses another decode_background (other training input), accepts a raised pixel limit."""
    from utils.training.config import OPTION_BY_NAME

    assert not OPTION_BY_NAME["decode_background"].resume_free and OPTION_BY_NAME["max_image_pixels"].resume_free


@pytest.mark.parametrize("value", ["white", "black", "#A0b1C2"])
def test_background_key_accepts(value):
    assert make_cfg(decode_background=value).decode_background == value


@pytest.mark.parametrize("value", ["grey", "#12345", "", 255, None])
def test_background_key_refuses_with_one_line(value):
    with pytest.raises(ConfigError) as err:
        make_cfg(decode_background=value)
    text = str(err.value)
    assert text.startswith("config key 'decode_background' (from test) must ")
    if isinstance(value, str) and value:
        assert text == ("config key 'decode_background' (from test) must be white, black or '#RRGGBB' (quoted: YAML "
                        f"reads # as a comment), got {value!r}")


def test_a_default_limit_image_of_90_megapixels_is_too_large(tmp_path):
    """10000 x 9000 (1-bit, 11 MB in memory, a few kB on disk): above Pillow's limit, below twice it (where
    Pillow only warns): refused all the same, before its pixels are decoded."""
    path = tmp_path / "huge.png"
    Image.new("1", (10000, 9000)).save(path)
    with pytest.raises(ImageTooLarge) as err:
        viewer(path)
    assert (err.value.width, err.value.height, err.value.limit) == (10000, 9000, 89_478_485)
    with open_image(str(path), None) as img:  # the header only: decoding 90 megapixels is not the point here
        assert img.size == (10000, 9000)
    assert Image.MAX_IMAGE_PIXELS is None  # Pillow's own limit is lifted with ours ...
    open_image(str(path), 90_000_000).close()
    assert Image.MAX_IMAGE_PIXELS == 90_000_000  # ... raised with it ...
    with pytest.raises(ImageTooLarge):
        viewer(path, max_pixels=1000)
    assert Image.MAX_IMAGE_PIXELS == DEFAULT_MAX_PIXELS  # ... and never lowered below its default


def test_the_reported_14000_square_png_is_too_large_not_a_traceback(tmp_path):
    """The issue's file: above twice Pillow's limit, where Pillow raises DecompressionBombError on open."""
    path = tmp_path / "poster.png"
    Image.new("1", (14000, 14000)).save(path)
    with pytest.raises(UnreadableImage) as err:
        FileImagesWithDecoding([str(path)], decoding=Decoding(VIEWER)).load(0)
    assert err.value.reason == "too large: 14000x14000 pixels, above the limit of 89,478,485"


def test_too_large_message_names_file_size_and_key_also_above_twice_the_limit(tmp_path):
    path = tmp_path / "big.png"
    Image.new("L", (300, 200), 7).save(path)
    for limit in (50_000, 20_000):  # 60,000 pixels: Pillow warns above 50,000, raises above 2 x 20,000
        images = FileImagesWithDecoding([str(path)], decoding=Decoding(VIEWER, max_pixels=limit))
        with pytest.raises(UnreadableImage) as err:
            images.load(0)
        assert str(err.value) == (
            f"image {path} is too large: 300x200 pixels, above the limit of {limit:,} (config key max_image_pixels: "
            "--set max_image_pixels=60000 reads it, 0 reads any size; --set check_images=true lists every "
            "unreadable file before training)")
        assert err.value.reason == f"too large: 300x200 pixels, above the limit of {limit:,}"


def test_check_images_gives_the_reason_per_file(tmp_path):
    ok = tmp_path / "ok.png"
    Image.new("RGB", (10, 10)).save(ok)
    big = tmp_path / "big.png"
    Image.new("RGB", (40, 30)).save(big)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    gone = str(tmp_path / "gone.png")
    images = FileImagesWithDecoding([str(ok), str(big), str(broken), gone], decoding=Decoding(VIEWER, max_pixels=1000))
    bad = find_unreadable(images, quiet=True)
    assert bad[0] == (str(big), "too large: 40x30 pixels, above the limit of 1,000")
    assert bad[1][0] == str(broken) and bad[1][1].startswith("cannot be decoded: UnidentifiedImageError: cannot "
                                                            "identify image file")
    assert bad[2] == (gone, "missing") and len(bad) == 3
    with pytest.raises(UnreadableImage) as err:
        images.load(3)
    assert str(err.value) == (f"image {gone} does not exist (it was there when the data set was listed; --set "
                              "check_images=true lists every unreadable file before training)")
    with pytest.raises(UnreadableImage) as err:
        images.load(2)
    assert str(err.value).startswith(f"cannot decode image {broken} (UnidentifiedImageError: cannot identify image "
                                     "file ")
    assert str(err.value).endswith("); replace or delete the file (--set check_images=true lists every unreadable "
                                   "file before training)")


@pytest.mark.parametrize("layout", ["little", "big", "bigtiff"])
def test_more_pages_of_a_tiff_are_found_from_its_header(tmp_path, layout):
    """tiff_has_more_pages reads the first directory's link to a second one, in each byte order and BigTIFF,
    and agrees with Pillow's page count; decoding reads page 1."""
    from dataloader.decode import tiff_has_more_pages

    mode, kw = ("I;16B", {}) if layout == "big" else ("L", {"big_tiff": layout == "bigtiff"})
    pages = [Image.new(mode, (4, 3), 10 * (i + 1)) for i in range(3)]
    for count in (1, 2, 3):
        path = tmp_path / f"{layout}_{count}.tif"
        pages[0].save(path, save_all=True, append_images=pages[1:count], **kw)
        assert path.read_bytes()[:4] == {"little": b"II*\0", "big": b"MM\0*", "bigtiff": b"II+\0"}[layout]
        with Image.open(path) as img:
            assert img.n_frames == count
        assert tiff_has_more_pages(str(path)) is (count > 1)
    assert viewer(tmp_path / f"{layout}_3.tif")[0, 0, 0] == (10 if layout != "big" else 0)  # page 1 (16 bit scaled)
    (tmp_path / "png.tif").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(20))
    (tmp_path / "cut.tif").write_bytes((tmp_path / f"{layout}_3.tif").read_bytes()[:9])
    assert not tiff_has_more_pages(str(tmp_path / "png.tif")) and not tiff_has_more_pages(str(tmp_path / "cut.tif"))
    assert not tiff_has_more_pages(str(tmp_path / "missing.tif"))
