"""Reading one photo into a uint8 RGB tensor, safely.

Decoding goes through ``torchvision.io.decode_image`` (libjpeg-turbo, libpng; it honours
EXIF orientation) with PIL for WebP (whose EXIF orientation torchvision ignores) and as
the fallback for everything else. Animated images give their first frame. Every
reader first looks at the header only, so a file that claims billions of pixels is
refused before a single pixel is decoded (a decompression bomb).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

# Same ceiling as PIL's own warning threshold (~89.5 megapixels, a 1 GiB RGBA canvas).
MAX_IMAGE_PIXELS = 89_478_485
# Every image is scaled so that its shorter side is the training size, then centre-cropped
# (resize_center_crop). A side of one pixel holds no image in that direction, and a long
# thin strip would be scaled into a huge intermediate (a 1 x 200,000 image at 224 px: 30 GB),
# so both are refused as bad files, from the header alone.
MIN_IMAGE_SIDE = 2
MAX_ASPECT_RATIO = 64  # long side / short side; panoramas stay well under it

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})

# We enforce MAX_IMAGE_PIXELS ourselves and report such files as bad, so PIL's
# warning for the same files would only repeat that on stderr.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
# torchvision 0.29 deprecates its image codecs in favour of TorchCodec; they remain the
# fastest decoders installed with torch, and PIL takes over if they are ever removed.
warnings.filterwarnings("ignore", message="The image decoding and encoding capabilities of TorchVision",
                        category=DeprecationWarning)


# White in PIL's wide grey modes: 16-bit ("I" is how PIL opens most 16-bit files), and
# float images, taken to be in [0, 1] as scientific TIFFs usually are.
WIDE_GREY_PEAK = {"I": 65535.0, "I;16": 65535.0, "I;16B": 65535.0, "I;16L": 65535.0, "F": 1.0}


class BadImageError(Exception):
    """A file that cannot be used as an image; the message says why in a few words."""


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def check_header(path: str | os.PathLike, max_pixels: int = MAX_IMAGE_PIXELS) -> tuple[int, int]:
    """(width, height) from the header alone; raises BadImageError for empty, foreign, huge,
    tiny or needle-thin files."""
    path = Path(path)
    # PIL refuses headers over twice its MAX_IMAGE_PIXELS before we can look at them; a
    # caller's higher limit must win. Only ever raised: every reader checks its own limit.
    if Image.MAX_IMAGE_PIXELS is not None and 2 * Image.MAX_IMAGE_PIXELS < max_pixels:
        Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        if path.stat().st_size == 0:
            raise BadImageError("empty file (0 bytes)")
        with Image.open(path) as image:
            width, height = image.size
    except BadImageError:
        raise
    except UnidentifiedImageError:
        raise BadImageError("not an image file") from None
    except Image.DecompressionBombError:  # PIL's own ceiling, raised to max_pixels below
        raise BadImageError(f"too large to decode safely (over {max_pixels:,} pixels)") from None
    except OSError as error:
        raise BadImageError(f"unreadable ({error.strerror or error})") from None
    if width * height > max_pixels:
        raise BadImageError(f"too large to decode safely ({width}x{height} pixels, limit {max_pixels:,})")
    if min(width, height) < MIN_IMAGE_SIDE:
        raise BadImageError(f"too small ({width}x{height} pixels; each side needs at least {MIN_IMAGE_SIDE})")
    if max(width, height) > MAX_ASPECT_RATIO * min(width, height):
        raise BadImageError(f"too narrow ({width}x{height} pixels; the long side may be at most "
                            f"{MAX_ASPECT_RATIO} times the short one)")
    return width, height


def verify_image(path: str | os.PathLike, max_pixels: int = MAX_IMAGE_PIXELS) -> None:
    """Decode the whole file strictly; raises BadImageError if any part is missing or corrupt."""
    check_header(path, max_pixels)
    try:
        with Image.open(path) as image:
            image.load()  # PIL refuses truncated data unless LOAD_TRUNCATED_IMAGES is set
    except Exception as error:  # PIL raises OSError, SyntaxError, ValueError... for bad data
        raise BadImageError(f"truncated or corrupt ({error})") from None


def load_rgb(path: str | os.PathLike, max_pixels: int = MAX_IMAGE_PIXELS) -> torch.Tensor:
    """The image as uint8 ``[3, H, W]``, upright (EXIF), alpha dropped, 16-bit scaled to 8-bit."""
    check_header(path, max_pixels)
    if Path(path).suffix.lower() == ".webp":  # torchvision's WebP decoder ignores EXIF orientation
        return _decode_pil(Path(path))
    try:
        return _decode_torchvision(Path(path))
    except (RuntimeError, ImportError):  # formats or variants libtorchvision does not handle
        return _decode_pil(Path(path))


def _decode_torchvision(path: Path) -> torch.Tensor:
    from torchvision.io import ImageReadMode, decode_image

    data = torch.from_numpy(np.fromfile(path, dtype=np.uint8))
    image = decode_image(data, mode=ImageReadMode.RGB, apply_exif_orientation=True)
    if image.dim() == 4:  # an animated GIF comes back as [frames, 3, H, W]: keep the first, as PIL does
        image = image[0]
    return _to_uint8(image)


def _decode_pil(path: Path) -> torch.Tensor:
    try:
        with Image.open(path) as opened:
            image = ImageOps.exif_transpose(opened)
            array = _pil_to_rgb_array(image)
    except Exception as error:
        raise BadImageError(f"truncated or corrupt ({error})") from None
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def _pil_to_rgb_array(image: Image.Image) -> np.ndarray:
    if image.mode in WIDE_GREY_PEAK:
        # 16-bit or float grey: convert("RGB") would clip everything above 255 to white. The
        # scale comes from the mode, never from the pixels, so a dark image stays dark.
        grey = np.asarray(image, dtype=np.float64)
        grey = np.clip(np.rint(grey * (255.0 / WIDE_GREY_PEAK[image.mode])), 0, 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    return np.array(image.convert("RGB"), dtype=np.uint8)  # a writable copy, as torch.from_numpy wants


def _to_uint8(image: torch.Tensor) -> torch.Tensor:
    if image.dtype == torch.uint8:
        return image
    if image.dtype == torch.uint16:  # 16-bit PNG: round 0..65535 onto 0..255
        return ((image.to(torch.int32) * 255 + 32767) // 65535).to(torch.uint8)
    raise RuntimeError(f"unexpected decoded dtype {image.dtype}")


def resize_center_crop(image: torch.Tensor, size: int) -> torch.Tensor:
    """Scale the shorter side to ``size`` (antialiased bilinear) and cut the centre square.

    This is the eval transform and what the photo cache stores, so a cached image is
    exactly what evaluation and ``predict`` feed the model.
    """
    _, height, width = image.shape
    scale = size / min(height, width)
    new_h, new_w = max(size, round(height * scale)), max(size, round(width * scale))
    if (new_h, new_w) != (height, width):
        # torch resizes uint8 directly (a fixed-point kernel ~30x faster than via float;
        # results differ from the float path by at most 1 level).
        image = F.interpolate(image[None].contiguous(), size=(new_h, new_w), mode="bilinear",
                              antialias=True, align_corners=False)[0]
    top, left = (new_h - size) // 2, (new_w - size) // 2
    return image[:, top:top + size, left:left + size].contiguous()
