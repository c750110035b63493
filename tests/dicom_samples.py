"""DICOM test data from pydicom's bundled files (present offline), re-UIDed so each test owns its studies.

`make_study` copies some of the files into one new study (new Study/Series/SOP Instance UIDs, optional
PatientID/AccessionNumber), keeping each file's transfer syntax and pixel data as they are (nothing is
decoded: compressed pixel data is copied as it is). `dataset_bytes` is what DICOM networking must carry
unchanged: the encoded dataset after the file meta information.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass, field
from pathlib import Path

from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

# name -> pydicom test file: one per transfer syntax / kind of object we claim to store.
SAMPLES = {
    "ct": "CT_small.dcm",  # CT, explicit VR little endian
    "mr": "MR_small.dcm",  # MR, explicit VR little endian
    "mr_implicit": "MR_small_implicit.dcm",  # implicit VR little endian
    "mr_bigendian": "MR_small_bigendian.dcm",  # explicit VR big endian
    "mr_rle": "MR_small_RLE.dcm",  # RLE lossless
    "mr_j2k_lossless": "MR_small_jp2klossless.dcm",  # JPEG 2000 lossless
    "mr_jpegls": "MR_small_jpeg_ls_lossless.dcm",  # JPEG-LS lossless
    "sc_jpeg_baseline": "SC_rgb_jpeg_dcmtk.dcm",  # JPEG baseline (process 1)
    "nm_jpeg_extended": "JPEG-lossy.dcm",  # JPEG extended (process 2 & 4)
    "sc_j2k": "JPEG2000.dcm",  # JPEG 2000
    "sc_deflated": "image_dfl.dcm",  # deflated explicit VR little endian
    "sr": "test-SR.dcm",  # comprehensive SR (no pixel data)
    "rtplan": "rtplan.dcm",  # RT plan (non-image, implicit VR)
    "ecg": "waveform_ecg.dcm",  # 12-lead ECG waveform
}


def sample_path(name: str) -> Path:
    found = get_testdata_file(SAMPLES.get(name, name))
    if found is None:
        raise FileNotFoundError(f"pydicom test file {name} is not installed")
    return Path(found)


@dataclass
class Study:
    uid: str
    files: list[Path] = field(default_factory=list)
    series: dict[str, str] = field(default_factory=dict)  # original series UID -> new one
    sops: list[str] = field(default_factory=list)
    wire: dict[str, bytes] = field(default_factory=dict)  # SOP Instance UID -> as a reference peer got it
    names: dict[str, str] = field(default_factory=dict)  # SOP Instance UID -> sample name

    @property
    def series_uids(self) -> set[str]:
        return set(self.series.values())


def make_study(
    out: Path,
    names: list[str],
    *,
    patient_id: str | None = None,
    patient_name: str | None = None,
    accession: str | None = None,
    copies: int = 1,
    study_date: str | None = None,
) -> Study:
    """Files of one new study from the named samples (each `copies` times, as separate instances)."""
    out.mkdir(parents=True, exist_ok=True)
    study = Study(generate_uid())
    for name in names:
        for _ in range(copies):
            ds = dcmread(sample_path(name))
            ds.StudyInstanceUID = study.uid
            original = str(ds.get("SeriesInstanceUID", name))
            ds.SeriesInstanceUID = study.series.setdefault(original, generate_uid())
            ds.SOPInstanceUID = generate_uid()
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            if patient_id is not None:
                ds.PatientID = patient_id
            if patient_name is not None:
                ds.PatientName = patient_name
            if accession is not None:
                ds.AccessionNumber = accession
            if study_date is not None:
                ds.StudyDate = study_date
            path = out / f"{ds.SOPInstanceUID}.dcm"
            ds.save_as(path, enforce_file_format=True)
            study.files.append(path)
            study.sops.append(ds.SOPInstanceUID)
            study.names[ds.SOPInstanceUID] = name
    return study


def dataset_bytes(data: bytes | Path) -> bytes:
    """The encoded dataset of a Part-10 file: what follows the preamble, 'DICM' and the meta group."""
    raw = data.read_bytes() if isinstance(data, Path) else data
    assert raw[128:132] == b"DICM", "not a DICOM Part-10 file"
    # (0002,0000) File Meta Information Group Length, explicit VR little endian, UL: 12 bytes.
    group, element, vr, _length, value = struct.unpack_from("<HH2sHI", raw, 132)
    assert (group, element, vr) == (2, 0, b"UL"), "the file meta group has no group length"
    return raw[132 + 12 + value :]


def content(data: bytes | Path) -> Dataset:
    """The data elements of a Part-10 file without group lengths and trailing padding (which senders such
    as DCMTK drop on the wire): files with equal `content` carry the same attributes and pixel bytes."""
    ds = dcmread(io.BytesIO(data) if isinstance(data, bytes) else data)
    for elem in list(ds):
        if elem.tag.element == 0 or elem.tag == 0xFFFCFFFC:
            del ds[elem.tag]
    return ds
