"""DICOMweb benchmark: our /dicomweb against Orthanc's DICOMweb plugin, on the same files, in one run.

    .venv/bin/python bench/dicomweb.py [--studies 4] [--per-study 75] [--size 512] [--batch 10]
                                       [--concurrency 4] [--runs 40] [--mongodb-uri URI]

Generates studies * per-study CT instances (pydicom's CT_small re-UIDed and, with --size 512, tiled
to a 512x512 slice as a real CT's: ~0.5 MB each), starts `fhir-server serve` (bench/common.py) and an
Orthanc with its DICOMweb plugin (tests/orthanc_peer.py) on this machine, then for each server:

- STOW-RS ingest: POST /studies, `--batch` instances per multipart request, `--concurrency` clients;
  instances/s and MB/s;
- QIDO-RS latency: study searches (by PatientID, StudyDate range, AccessionNumber, all studies),
  series and instances of a study, `--runs` times each, one client; p50 and p95;
- WADO-RS retrieve: every study as multipart/related application/dicom (transfer-syntax=*: as stored,
  no transcoding on either side), body streamed and counted, `--concurrency` clients; instances/s, MB/s.

Prints each figure for both and the ratio ours ÷ Orthanc for throughput (> 1: we are faster) and
Orthanc ÷ ours for latency (> 1: we are faster). Time is printed, never asserted. Orthanc runs with its
Debian defaults (SQLite index, files on disk, no compression); our server with its defaults (audit on).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import running_server, timed_concurrently
from tests.orthanc_peer import running_orthanc

ALL_AS_STORED = 'multipart/related; type="application/dicom"; transfer-syntax=*'


@dataclass
class Target:
    name: str
    base: str  # the DICOMweb root, no trailing slash
    headers: dict[str, str]


@dataclass
class Corpus:
    studies: list[str]
    patients: list[str]
    accessions: list[str]
    instances: list[bytes]  # Part-10 files, grouped by study in order
    per_study: int

    @property
    def megabytes(self) -> float:
        return sum(map(len, self.instances)) / 1e6


def make_corpus(studies: int, per_study: int, size: int) -> Corpus:
    template = dcmread(get_testdata_file("CT_small.dcm"))
    if size != template.Rows:
        reps = -(-size // template.Rows)
        pixels = template.pixel_array
        tiled = np.tile(pixels, (reps, reps))[:size, :size]
        template.Rows = template.Columns = size
        template.PixelData = np.ascontiguousarray(tiled, dtype=pixels.dtype).tobytes()
    corpus = Corpus([], [], [], [], per_study)
    for s in range(studies):
        study_uid, series_uid = generate_uid(), generate_uid()
        patient, accession = f"BENCH-{s:03d}", f"ACC-{uuid.uuid4().hex[:8]}"
        corpus.studies.append(study_uid)
        corpus.patients.append(patient)
        corpus.accessions.append(accession)
        for i in range(per_study):
            template.StudyInstanceUID, template.SeriesInstanceUID = study_uid, series_uid
            template.SOPInstanceUID = generate_uid()
            template.file_meta.MediaStorageSOPInstanceUID = template.SOPInstanceUID
            template.PatientID, template.AccessionNumber = patient, accession
            template.StudyDate = f"2024{(s % 12) + 1:02d}15"
            template.InstanceNumber = i + 1
            out = io.BytesIO()
            template.save_as(out, enforce_file_format=True)
            corpus.instances.append(out.getvalue())
    return corpus


def multipart(parts: list[bytes]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    chunks = []
    for part in parts:
        chunks += [f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode(), part, b"\r\n"]
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f'multipart/related; type="application/dicom"; boundary={boundary}'


async def stow(http: httpx.AsyncClient, target: Target, corpus: Corpus, batch: int, conc: int) -> float:
    bodies = [multipart(corpus.instances[i : i + batch]) for i in range(0, len(corpus.instances), batch)]

    async def send(i: int) -> None:
        body, ctype = bodies[i]
        r = await http.post(f"{target.base}/studies", content=body, headers={**target.headers, "Content-Type": ctype})
        if r.status_code != 200:
            raise RuntimeError(f"{target.name} STOW-RS answered {r.status_code}: {r.text[:300]}")

    wall, _ = await timed_concurrently(send, len(bodies), conc)
    return wall


async def latencies(op: Callable[[], Awaitable[httpx.Response]], runs: int) -> list[float]:
    out = []
    await op()  # warm-up
    for _ in range(runs):
        t = time.perf_counter()
        r = await op()
        out.append(time.perf_counter() - t)
        if r.status_code != 200:
            raise RuntimeError(f"QIDO-RS answered {r.status_code}: {r.text[:300]}")
    return out


async def qido(http: httpx.AsyncClient, target: Target, corpus: Corpus, runs: int) -> dict[str, list[float]]:
    h = {**target.headers, "Accept": "application/dicom+json"}
    study = corpus.studies[len(corpus.studies) // 2]
    queries = {
        "studies?PatientID": ("/studies", {"PatientID": corpus.patients[len(corpus.patients) // 2]}),
        "studies?StudyDate=range": ("/studies", {"StudyDate": "20240101-20240331"}),
        "studies?AccessionNumber": ("/studies", {"AccessionNumber": corpus.accessions[0]}),
        "studies (all)": ("/studies", {}),
        "studies/{s}/series": (f"/studies/{study}/series", {}),
        "studies/{s}/instances": (f"/studies/{study}/instances", {}),
    }
    out: dict[str, list[float]] = {}
    for name, (path, params) in queries.items():

        async def op(path: str = path, params: dict[str, str] = params) -> httpx.Response:
            return await http.get(f"{target.base}{path}", params=params, headers=h)

        out[name] = await latencies(op, runs)
    return out


async def wado(http: httpx.AsyncClient, target: Target, corpus: Corpus, conc: int, rounds: int) -> tuple[float, int]:
    h = {**target.headers, "Accept": ALL_AS_STORED}
    total = 0

    async def fetch(i: int) -> None:
        nonlocal total
        study = corpus.studies[i % len(corpus.studies)]
        async with http.stream("GET", f"{target.base}/studies/{study}", headers=h) as r:
            if r.status_code != 200:
                raise RuntimeError(f"{target.name} WADO-RS answered {r.status_code}: {(await r.aread())[:300]!r}")
            async for chunk in r.aiter_raw():
                total += len(chunk)

    wall, _ = await timed_concurrently(fetch, len(corpus.studies) * rounds, conc)
    return wall, total


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[q - 1] * 1000 if len(values) > 1 else values[0] * 1000


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--studies", type=int, default=4)
    p.add_argument("--per-study", type=int, default=75)
    p.add_argument("--size", type=int, default=512, help="rows/columns of each CT slice (CT_small is 128)")
    p.add_argument("--batch", type=int, default=10, help="instances per STOW-RS request")
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--runs", type=int, default=40, help="QIDO-RS runs per query")
    p.add_argument("--wado-rounds", type=int, default=2, help="times each study is retrieved")
    p.add_argument("--mongodb-uri")
    args = p.parse_args()

    corpus = make_corpus(args.studies, args.per_study, args.size)
    n, mb = len(corpus.instances), corpus.megabytes
    print(
        f"corpus: {args.studies} studies x {args.per_study} CT slices {args.size}x{args.size}: {n} files, {mb:.1f} MB"
    )

    results: dict[str, dict[str, object]] = {}
    with tempfile.TemporaryDirectory(prefix="orthanc-bench-") as otmp:
        async with running_server(args.mongodb_uri) as ours_srv:
            with running_orthanc(Path(otmp)) as orthanc:
                origin = ours_srv.base.removesuffix("/fhir")
                targets = [
                    Target("ours", f"{origin}/dicomweb", {"Authorization": f"Bearer {ours_srv.token}"}),
                    Target("orthanc", orthanc.dicomweb, {}),
                ]
                limits = httpx.Limits(max_connections=args.concurrency * 2)
                async with httpx.AsyncClient(timeout=600, limits=limits) as http:
                    for t in targets:
                        stow_wall = await stow(http, t, corpus, args.batch, args.concurrency)
                        lat = await qido(http, t, corpus, args.runs)
                        wado_wall, wado_bytes = await wado(http, t, corpus, args.concurrency, args.wado_rounds)
                        results[t.name] = {"stow": stow_wall, "qido": lat, "wado": (wado_wall, wado_bytes)}

    ours, orth = results["ours"], results["orthanc"]
    print(f"\n{'measure':<40} {'ours':>14} {'orthanc':>14} {'ratio':>8}")
    s_o, s_t = ours["stow"], orth["stow"]
    assert isinstance(s_o, float) and isinstance(s_t, float)
    print(f"{'STOW-RS ingest, instances/s':<40} {n / s_o:>14.1f} {n / s_t:>14.1f} {s_t / s_o:>8.2f}")
    print(f"{'STOW-RS ingest, MB/s':<40} {mb / s_o:>14.1f} {mb / s_t:>14.1f} {s_t / s_o:>8.2f}")
    lo, lt = ours["qido"], orth["qido"]
    assert isinstance(lo, dict) and isinstance(lt, dict)
    for name in lo:
        for q in (50, 95):
            a, b = pct(lo[name], q), pct(lt[name], q)
            print(f"{f'QIDO {name} p{q}, ms':<40} {a:>14.2f} {b:>14.2f} {b / a:>8.2f}")
    (w_o, bytes_o), (w_t, bytes_t) = ours["wado"], orth["wado"]  # type: ignore[misc]
    fetched = len(corpus.studies) * args.wado_rounds * args.per_study
    print(f"{'WADO-RS study, instances/s':<40} {fetched / w_o:>14.1f} {fetched / w_t:>14.1f} {w_t / w_o:>8.2f}")
    print(
        f"{'WADO-RS study, MB/s (body)':<40} {bytes_o / w_o / 1e6:>14.1f} {bytes_t / w_t / 1e6:>14.1f} "
        f"{(bytes_o / w_o) / (bytes_t / w_t):>8.2f}"
    )
    print("\nratio: ours ÷ Orthanc for throughput, Orthanc ÷ ours for latency; > 1 means we are faster")


if __name__ == "__main__":
    asyncio.run(main())
