"""The cost of authorisation and audit: an authorised, audited read against the same read with both off.

    .venv/bin/python bench/security.py [--n 500] [--mongodb-uri URI]

Two `fhir-server serve` processes on the same database, one with token checks and the audit trail
(the default), one with FHIR_AUTH_ENABLED=false and FHIR_AUDIT_ENABLED=false; reads alternate between
them so both see the same data and load. Prints p50 latencies and the ratio (keep it near 1).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import running_server
from bench.crud import observation


async def main(n: int, mongodb_uri: str | None) -> None:
    async with running_server(mongodb_uri) as secured:
        off = {"FHIR_AUTH_ENABLED": "false", "FHIR_AUDIT_ENABLED": "false"}
        async with running_server(secured.uri, off) as open_:
            headers = {"Authorization": f"Bearer {secured.token}", "Content-Type": "application/fhir+json"}
            async with httpx.AsyncClient(headers=headers, timeout=60) as http:
                ids = []
                for _ in range(50):
                    r = await http.post(f"{secured.base}/Observation", json=observation())
                    ids.append(r.json()["id"])
                on_t: list[float] = []
                off_t: list[float] = []
                for i in range(n):
                    for base, bucket in ((secured.base, on_t), (open_.base, off_t)):
                        t = time.perf_counter()
                        (await http.get(f"{base}/Observation/{ids[i % len(ids)]}")).raise_for_status()
                        bucket.append(time.perf_counter() - t)
            on_p50, off_p50 = statistics.median(on_t), statistics.median(off_t)
            print(f"backend: {'MongoDB' if mongodb_uri else 'FerretDB'}; {n} reads each")
            print(f"read with token check + AuditEvent: p50 {on_p50 * 1e3:.2f} ms")
            print(f"read with security off:             p50 {off_p50 * 1e3:.2f} ms")
            print(f"ratio (authorised ÷ open): {on_p50 / off_p50:.2f}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--mongodb-uri", default=None)
    args = ap.parse_args()
    asyncio.run(main(args.n, args.mongodb_uri))
