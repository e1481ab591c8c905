"""Image file -> RGB image: the two decodings of this project, as pure functions of a PIL image.

``official`` (the paper data sets: CIFAR, Tiny-ImageNet, Clothing1M, WebVision, WebFG, Food-101N):
    ``img.convert("RGB")``, exactly what the official code does, so that the published numbers are
    reproduced (EXIF orientation ignored, transparent pixels take their stored colour, 16-bit values
    clipped at 255).

``viewer`` (your own data, ``imagefolder`` and ``csv``, and ``predict.py`` for models trained on them):
    the image as an image viewer shows it, in this order:

    1. EXIF orientation applied (:func:`PIL.ImageOps.exif_transpose`; orientations 2-8 flip / rotate).
    2. 16-bit greyscale (modes ``I;16``, ``I;16L``, ``I;16B``, ``I;16N`` and ``I``, as PNG and TIFF
       decode to) scaled to 8 bit: ``round(v * 255 / 65535)`` per pixel (``I`` first clipped to
       0..65535), never clipped at 255.  (16-bit colour PNGs reach this module as 8-bit RGB / RGBA:
       Pillow's decoder keeps the high byte of each value, ``v // 256``, at most 1 below the rounded
       scaling; not clipped either.)
    3. Transparency (modes ``RGBA``, ``LA``, ``PA``, ``RGBa``, and ``P`` / ``L`` / ``RGB`` with a
       ``transparency`` entry, e.g. a palette PNG with a transparent index) composited onto the
       background colour ``bg``: per channel ``round((a * c + (255 - a) * bg) / 255)`` with the alpha ``a``
       and colour ``c`` in 0..255 (``P``, ``L`` and the premultiplied ``RGBa`` are first expanded to RGBA
       by Pillow).
    4. CMYK (JPEG, TIFF) to RGB as ``round((255 - C) * (255 - K) / 255)`` for R (M for G, Y for B);
       embedded ICC profiles are not applied.  Adobe's inverted CMYK JPEGs are un-inverted by
       Pillow's decoder before this step.
    5. Everything else (greyscale ``L``, bilevel ``1``, palette ``P``, ``YCbCr``, ...) by Pillow's
       ``convert("RGB")``, which is exact for these modes (grey g -> (g, g, g), ``1`` -> 0 / 255,
       palette -> its colour).

Images above a pixel limit (``max_image_pixels``, default Pillow's 89,478,485, about 9459 x 9459) are
refused with :class:`ImageTooLarge` (width, height, limit) before their pixels are decoded.  Pillow's
own limit (``Image.MAX_IMAGE_PIXELS``) is raised with it (or lifted: no limit), never lowered below its
default, so Pillow never refuses an image this limit admits.
"""
from __future__ import annotations

import re
import struct
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

OFFICIAL, VIEWER = "official", "viewer"
DECODINGS = (OFFICIAL, VIEWER)
DEFAULT_BACKGROUND = "white"
DEFAULT_MAX_PIXELS = 89_478_485  # Pillow's Image.MAX_IMAGE_PIXELS: 1024 * 1024 * 1024 // 4 // 3
BACKGROUND_PATTERN = re.compile(r"white|black|#[0-9A-Fa-f]{6}")

SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa")


def background_rgb(name: str) -> tuple[int, int, int]:
    """``white`` -> (255, 255, 255), ``black`` -> (0, 0, 0), ``#RRGGBB`` -> its three bytes."""
    if not BACKGROUND_PATTERN.fullmatch(name):
        raise ValueError(f"background must be white, black or '#RRGGBB', got {name!r}")
    if name == "white":
        return 255, 255, 255
    if name == "black":
        return 0, 0, 0
    return int(name[1:3], 16), int(name[3:5], 16), int(name[5:7], 16)


@dataclass(frozen=True)
class Decoding:
    """How image files become RGB images: ``name`` (official / viewer), the ``background`` colour that
    transparency is composited onto (viewer), and the pixel limit (``max_pixels``; None: none)."""

    name: str = OFFICIAL
    background: str = DEFAULT_BACKGROUND
    max_pixels: int | None = DEFAULT_MAX_PIXELS

    def __post_init__(self):
        if self.name not in DECODINGS:
            raise ValueError(f"decoding must be one of {', '.join(DECODINGS)}, got {self.name!r}")
        background_rgb(self.background)

    def record(self) -> dict:
        """What an exported model stores (the pixel limit is not part of it: it belongs to the machine)."""
        return {"name": self.name, "background": self.background}


class ImageTooLarge(Exception):
    """An image with more pixels than the limit (its header was read, its pixels were not)."""

    def __init__(self, path: str, width: int, height: int, limit: int):
        self.path, self.width, self.height, self.limit = path, width, height, limit
        super().__init__(f"{path}: {self.reason}")

    @property
    def reason(self) -> str:
        """``too large: WxH pixels, above the limit of N`` (what check_images and predict.py's rows say)."""
        return f"too large: {self.width}x{self.height} pixels, above the limit of {self.limit:,}"


def pixel_limit(value: int | None) -> int | None:
    """The config value (``max_image_pixels``) as a limit: 0 or None mean no limit."""
    return value or None


def set_pillow_limit(limit: int | None) -> None:
    """Pillow's own decompression-bomb limit of this process, never below ours (``limit``; None: none).

    Not lowered below Pillow's default: Pillow checks it on crops and other in-memory images as well, where
    a low ``max_image_pixels`` has no business.  A DataLoader worker started by spawn begins with Pillow's
    default, so every open sets it again (one comparison).
    """
    wanted = None if limit is None else max(limit, DEFAULT_MAX_PIXELS)
    if Image.MAX_IMAGE_PIXELS != wanted:
        Image.MAX_IMAGE_PIXELS = wanted


def _header_size(path: str) -> tuple[int, int]:
    """(width, height) from the header, with Pillow's limit lifted for this one read."""
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        with Image.open(path) as img:
            return img.size
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def open_image(path: str, max_pixels: int | None) -> Image.Image:
    """``Image.open(path)`` (lazy: header only) or :class:`ImageTooLarge` above ``max_pixels``."""
    set_pillow_limit(max_pixels)
    with warnings.catch_warnings():
        # Pillow warns between 1x and 2x its limit and raises above 2x; both are "too large" here
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            img = Image.open(path)
        except Image.DecompressionBombError:
            raise ImageTooLarge(path, *_header_size(path), max_pixels) from None
    if max_pixels is not None and img.width * img.height > max_pixels:
        img.close()
        raise ImageTooLarge(path, img.width, img.height, max_pixels)
    return img


def scale_16_bit(img: Image.Image) -> Image.Image:
    """16-bit greyscale -> 8-bit ``L``: ``round(v * 255 / 65535)`` (``I``: v clipped to 0..65535 first)."""
    values = np.clip(np.asarray(img).astype(np.int64), 0, 65535)
    # exact rounding in integers: v*255/65535 = v/257, never exactly half way (257 is odd)
    return Image.fromarray(((values + 128) // 257).astype(np.uint8), mode="L")


def has_transparency(img: Image.Image) -> bool:
    return img.mode in ALPHA_MODES or (img.mode in ("P", "L", "RGB") and "transparency" in img.info)


def composite(img: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """A transparent image onto ``background``: ``round((a * c + (255 - a) * bg) / 255)`` per channel."""
    rgba = np.asarray(img.convert("RGBA")).astype(np.int32)
    alpha = rgba[..., 3:]
    bg = np.asarray(background, dtype=np.int32)
    # (x + 127) // 255 rounds x / 255 exactly: x / 255 is never half way for an integer x
    out = (alpha * rgba[..., :3] + (255 - alpha) * bg + 127) // 255
    return Image.fromarray(out.astype(np.uint8), mode="RGB")


def cmyk_to_rgb(img: Image.Image) -> Image.Image:
    """CMYK -> RGB: R = round((255 - C) * (255 - K) / 255), likewise G from M and B from Y."""
    cmyk = np.asarray(img).astype(np.int32)
    ink = 255 - cmyk[..., 3:]
    out = ((255 - cmyk[..., :3]) * ink + 127) // 255
    return Image.fromarray(out.astype(np.uint8), mode="RGB")


def viewer_rgb(img: Image.Image, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """The RGB image a viewer shows for ``img`` (module docstring: steps 1-5)."""
    img = ImageOps.exif_transpose(img)
    if img.mode in SIXTEEN_BIT_MODES:
        img = scale_16_bit(img)
    if has_transparency(img):
        return composite(img, background)
    if img.mode == "CMYK":
        return cmyk_to_rgb(img)
    return img.convert("RGB")


def official_rgb(img: Image.Image) -> Image.Image:
    """The official code's decoding: a bare ``convert("RGB")``."""
    return img.convert("RGB")


TIFF_EXTENSIONS = (".tif", ".tiff")
_TIFF_LAYOUT = {b"II*\0": ("<", "I", "H", 12, 4), b"MM\0*": (">", "I", "H", 12, 4),  # classic TIFF
                b"II+\0": ("<", "Q", "Q", 20, 8), b"MM\0+": (">", "Q", "Q", 20, 8)}  # BigTIFF


def tiff_has_more_pages(path: str) -> bool:
    """Whether the TIFF file ``path`` holds more than one page (image file directory): decoding reads the
    first page only.  Reads the header and the first directory's link to the next (three small reads, no
    pixels: about 55 us per file against 0.7 ms for Pillow's open, which parses every tag); False for a
    file that is not a TIFF or cannot be read (decoding reports it)."""
    try:
        with open(path, "rb") as f:
            head = f.read(16)
            layout = _TIFF_LAYOUT.get(head[:4])
            if layout is None:
                return False
            order, offset, count, entry, link = layout
            first = struct.unpack_from(order + offset, head, 4 if offset == "I" else 8)[0]
            f.seek(first)
            entries = struct.unpack(order + count, f.read(struct.calcsize(count)))[0]
            f.seek(first + struct.calcsize(count) + entry * entries)
            following = f.read(link)
            return len(following) == link and struct.unpack(order + offset, following)[0] != 0
    except (OSError, struct.error):
        return False


def decode_file(path: str, decoding: Decoding) -> Image.Image:
    """The RGB image of the file ``path`` under ``decoding``.

    Raises :class:`ImageTooLarge`, FileNotFoundError, or Pillow's OSError / ValueError / SyntaxError
    (``UnidentifiedImageError`` is an OSError) for a file that is not a readable image.
    """
    with open_image(path, decoding.max_pixels) as img:
        if decoding.name == VIEWER:
            return viewer_rgb(img, background_rgb(decoding.background))
        return official_rgb(img)
