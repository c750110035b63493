"""Rendered images (WADO-RS `/rendered`, `/thumbnail`): one frame as JPEG or PNG for a viewer.

pydicom decodes only the frame asked for (`pixel_array(path, index=…)`); the modality LUT (rescale)
and the VOI LUT or window are applied, MONOCHROME1 is inverted, palette colour expanded, and the
result scaled to 8 bits with numpy, then encoded by Pillow. Query parameters (PS3.18 8.3.5.1.1):
`window=center,width[,linear|sigmoid]`, `viewport=width,height`, `quality=1..100`.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom import dcmread
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut, pixel_array


class RenderError(ValueError):
    pass


@dataclass(frozen=True)
class RenderOptions:
    media_type: str = "image/jpeg"
    window: tuple[float, float, str] | None = None  # center, width, function
    viewport: tuple[int, int] | None = None
    quality: int = 90


def parse_options(params: dict[str, str], media_type: str) -> RenderOptions:
    window = None
    if params.get("window"):
        parts = [p.strip() for p in params["window"].split(",")]
        try:
            center, width = float(parts[0]), float(parts[1])
        except (IndexError, ValueError):
            raise RenderError("window is center,width[,function]") from None
        function = parts[2].lower() if len(parts) > 2 else "linear"
        if function not in ("linear", "linear_exact", "sigmoid") or width <= 0:
            raise RenderError("window width must be > 0 and function linear, linear_exact or sigmoid")
        window = (center, width, function)
    viewport = None
    if params.get("viewport"):
        try:
            w, h = (int(v) for v in params["viewport"].split(",")[:2])
        except ValueError:
            raise RenderError("viewport is width,height") from None
        if not (0 < w <= 8192 and 0 < h <= 8192):
            raise RenderError("viewport sizes must be within 1..8192")
        viewport = (w, h)
    quality = 90
    if params.get("quality"):
        try:
            quality = int(params["quality"])
        except ValueError:
            raise RenderError("quality is an integer 1..100") from None
        if not 1 <= quality <= 100:
            raise RenderError("quality is an integer 1..100")
    return RenderOptions(media_type, window, viewport, quality)


def render(source: Path | bytes, frame: int, options: RenderOptions) -> bytes:
    """Frame `frame` (0-based) of the instance as JPEG or PNG bytes."""
    src: Path | io.BytesIO = source if isinstance(source, Path) else io.BytesIO(source)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = dcmread(src, stop_before_pixels=True)
        if isinstance(src, io.BytesIO):
            src.seek(0)
        if "Rows" not in ds or "Columns" not in ds:
            raise RenderError("the instance has no image pixel data")
        try:
            arr = pixel_array(src, index=frame)
        except Exception as exc:
            arr = _whole_dataset_frame(src, frame, exc)
    return encode(to_8bit(arr, ds, options), options)


def _whole_dataset_frame(src: Path | io.BytesIO, frame: int, first_error: Exception) -> np.ndarray:
    """Fallback when the frame cannot be read on its own (e.g. a deflated data set): decode it all."""
    if isinstance(src, io.BytesIO):
        src.seek(0)
    try:
        full = dcmread(src)
        arr = full.pixel_array
        frames = int(full.get("NumberOfFrames", 1) or 1)
        return arr[frame] if frames > 1 else arr
    except Exception:
        raise RenderError(f"the frame cannot be decoded: {first_error}") from None


def to_8bit(arr: np.ndarray, ds: object, options: RenderOptions) -> np.ndarray:
    photometric = str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2")).upper()
    if photometric == "PALETTE COLOR":
        rgb = apply_color_lut(arr, ds)
        return _scale_to_8bit(rgb.astype(np.float64), 0, float(rgb.max() or 1))
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        # Colour (pydicom already converted YBR to RGB): scale by the stored bit depth.
        bits = int(getattr(ds, "BitsStored", 8) or 8)
        return _scale_to_8bit(arr[..., :3].astype(np.float64), 0, float(2**bits - 1))
    values = apply_modality_lut(arr, ds).astype(np.float64)
    if options.window is not None:
        center, width, function = options.window
        out = _window(values, center, width, function)
    elif "WindowCenter" in ds or "VOILUTSequence" in ds:  # type: ignore[operator]
        try:
            voi = apply_voi_lut(values, ds, index=0).astype(np.float64)
            out = _scale_to_8bit(voi, float(voi.min()), float(voi.max()))
        except Exception:
            out = _scale_to_8bit(values, float(values.min()), float(values.max()))
    else:
        out = _scale_to_8bit(values, float(values.min()), float(values.max()))
    if photometric == "MONOCHROME1":
        out = 255 - out
    return out


def _window(values: np.ndarray, center: float, width: float, function: str) -> np.ndarray:
    if function == "sigmoid":
        out = 255.0 / (1.0 + np.exp(-4.0 * (values - center) / width))
        return out.clip(0, 255).astype(np.uint8)
    if function == "linear_exact":
        low, high = center - width / 2, center + width / 2
    else:  # PS3.3 C.11.2.1.2.1
        low, high = center - 0.5 - (width - 1) / 2, center - 0.5 + (width - 1) / 2
    return _scale_to_8bit(values, low, high)


def _scale_to_8bit(values: np.ndarray, low: float, high: float) -> np.ndarray:
    if high <= low:
        return np.zeros(values.shape, dtype=np.uint8) if values.max() <= low else np.full(values.shape, 255, np.uint8)
    out = (values - low) * (255.0 / (high - low))
    return out.clip(0, 255).astype(np.uint8)


def encode(pixels: np.ndarray, options: RenderOptions) -> bytes:
    image = Image.fromarray(pixels)
    if options.viewport is not None:
        image.thumbnail(options.viewport, Image.Resampling.LANCZOS)
    out = io.BytesIO()
    if options.media_type == "image/png":
        image.save(out, format="PNG")
    else:
        image.save(out, format="JPEG", quality=options.quality)
    return out.getvalue()
