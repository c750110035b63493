"""Lossless transfer-syntax conversions for WADO-RS, one instance at a time (never a whole study).

Only conversions to Explicit or Implicit VR Little Endian: from the other native syntaxes (a re-encoding)
and from compressed pixel data pydicom can decode (RLE, JPEG 2000, JPEG baseline/extended via Pillow),
which changes no pixel value the stored data holds. New lossy encodings are never produced. The SOP
Instance UID is kept: the object is the same, only its encoding differs.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from pydicom import dcmread
from pydicom.filewriter import dcmwrite

from dicomweb.negotiation import EXPLICIT_BE, IMPLICIT_LE, NATIVE, TRANSCODE_TARGETS, can_produce


class TranscodeError(Exception):
    pass


def transcode(data: bytes, target: str) -> bytes:
    if target not in TRANSCODE_TARGETS:
        raise TranscodeError(f"no conversion to {target}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = dcmread(io.BytesIO(data))
        source = str(ds.file_meta.TransferSyntaxUID)
        if source == target:
            return data
        if not can_produce(source, target):
            raise TranscodeError(f"{source} cannot be converted to {target} without loss")
        try:
            if source not in NATIVE and "PixelData" in ds:
                ds.decompress(generate_instance_uid=False)
            elif source == EXPLICIT_BE and "PixelData" in ds:
                arr = ds.pixel_array
                little = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
                ds.PixelData = np.ascontiguousarray(little).tobytes()
                ds["PixelData"].VR = "OW" if int(ds.BitsAllocated) > 8 else "OB"
        except Exception as exc:
            raise TranscodeError(f"the pixel data cannot be decoded: {exc}") from None
        ds.file_meta.TransferSyntaxUID = target
        out = io.BytesIO()
        # force_encoding: pydicom refuses a change of endianness otherwise (pixel words were swapped above).
        swap = source == EXPLICIT_BE
        dcmwrite(
            out, ds, implicit_vr=target == IMPLICIT_LE, little_endian=True, enforce_file_format=not swap,
            force_encoding=swap,
        )  # fmt: skip
        return out.getvalue()
