"""HL7 v2 over MLLP: ADT messages per second on one connection and ACK latency, against a plain MLLP echo.

    python -m bench.mllp [--n 500] [--mongodb-uri URI]

Starts FerretDB and `fhir-server serve` with its MLLP listener, and a plain MLLP echo server (a separate
process answering each frame with a fixed ACK, no parsing, no storage) on the same loopback. One client
connection sends the messages one after the other, each waiting for its ACK (as HL7 senders do), to
each server: ADT^A28 (a new patient: one Patient written) and ADT^A01 (a new patient and its visit:
Patient + Encounter, all or nothing), each with distinct identifiers. Prints messages/s and ACK
latency p50/p95 for each, and the ratio to the echo measured in the same run; then, for scale, the same
patient creation through the FHIR API (conditional create on the IPP) and the rate of the HL7 layer
alone (decode, parse, map, validate, build the ACK) in process. Not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time

from bench.common import _free_port, running_server
from tests.test_hl7v2_support import adt

START, END = b"\x0b", b"\x1c\x0d"


async def echo_server(port: int) -> None:
    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                frame = await reader.readuntil(END)
                control_id = frame.split(b"\r", 1)[0].split(b"|")[9]
                writer.write(START + b"MSH|^~\\&|ECHO||||||ACK|1|P|2.5\rMSA|AA|" + control_id + b"\r" + END)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(connection, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


async def wait_port(port: int) -> None:
    for _ in range(600):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.1)
    raise SystemExit(f"nothing listens on {port}")


async def run(port: int, messages: list[bytes]) -> tuple[float, list[float]]:
    """Send on one connection, one at a time; (messages per second, latencies in ms)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    latencies = []
    start = time.perf_counter()
    for message in messages:
        t0 = time.perf_counter()
        writer.write(START + message + END)
        await writer.drain()
        ack = await reader.readuntil(END)
        latencies.append((time.perf_counter() - t0) * 1000)
        if b"MSA|AA|" not in ack:
            raise SystemExit(f"not accepted: {ack[:200]!r}")
    elapsed = time.perf_counter() - start
    writer.close()
    return len(messages) / elapsed, latencies


def batch(event: str, prefix: str, n: int) -> list[bytes]:
    visit = event == "A01"
    return [
        adt(event, f"{prefix}-{i}", ipp=f"{prefix}-{i}", family="BENCH", visit=f"V{prefix}-{i}" if visit else None,
            movement=f"M{i}" if visit else None).encode()
        for i in range(n)
    ]  # fmt: skip


def mapping_only(messages: list[bytes]) -> float:
    """Messages per second through decoding, parsing, the ADT → Patient mapping and validation alone
    (no socket, no database): the cost of the HL7 layer itself."""
    from fhir_server.interactions.body import validate_or_raise
    from mappings.hl7v2.ack import build_ack, decode
    from mappings.hl7v2.identifiers import Identifiers
    from mappings.hl7v2.patients import PatientMapping
    from mappings.hl7v2.segments import Message

    def one(raw: bytes) -> None:
        text, header = decode(raw)
        msg = Message.parse(text)
        patient = PatientMapping(msg, Identifiers(msg.enc, {})).patient()
        validate_or_raise(patient, "Patient", model_check=False)
        build_ack(header, "AA", "Patient/x")

    for raw in messages[:20]:  # warm up (the validator loads its tables on first use)
        one(raw)
    start = time.perf_counter()
    for raw in messages:
        one(raw)
    return len(messages) / (time.perf_counter() - start)


async def rest_equivalent(base: str, token: str, n: int) -> tuple[float, list[float]]:
    """The same work through the FHIR API: a conditional create (If-None-Exist on the IPP) per patient,
    one HTTP connection, one request in flight."""
    import httpx

    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"}
    system = "urn:oid:1.2.250.1.213.4.5.2.4"
    latencies = []
    async with httpx.AsyncClient(headers=headers, timeout=60) as client:
        start = time.perf_counter()
        for i in range(n):
            patient = {
                "resourceType": "Patient",
                "identifier": [{"system": system, "value": f"REST-{i}"}],
                "name": [{"use": "official", "family": "BENCH", "given": ["JEAN"]}],
                "birthDate": "1980-01-01",
            }
            t0 = time.perf_counter()
            r = await client.post(
                f"{base}/Patient", json=patient, headers={"If-None-Exist": f"identifier={system}|REST-{i}"}
            )
            latencies.append((time.perf_counter() - t0) * 1000)
            if r.status_code != 201:
                raise SystemExit(f"REST create failed: {r.status_code} {r.text[:200]}")
        return n / (time.perf_counter() - start), latencies


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1]


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--mongodb-uri")
    args = parser.parse_args()
    mllp_port, echo_port = _free_port(), _free_port()
    echo = await asyncio.create_subprocess_exec(sys.executable, "-m", "bench.mllp", "--echo", str(echo_port))
    try:
        async with running_server(args.mongodb_uri, {"FHIR_MLLP_PORT": str(mllp_port)}) as server:
            await wait_port(mllp_port)
            await wait_port(echo_port)
            await run(mllp_port, batch("A28", "WARM", 30))  # warm up (indexes, first writes)
            await run(echo_port, batch("A28", "WARMECHO", 30))
            print(f"{args.n} messages per case, one MLLP connection, one message in flight")
            print(f"{'case':<34}{'msg/s':>9}{'p50 ms':>9}{'p95 ms':>9}{'echo msg/s':>12}{'ratio':>10}")
            for event, label in (("A28", "ADT^A28 (Patient)"), ("A01", "ADT^A01 (Patient + Encounter)")):
                rate_echo, lat_echo = await run(echo_port, batch(event, f"E{event}", args.n))
                rate, lat = await run(mllp_port, batch(event, f"S{event}", args.n))
                print(
                    f"{label:<34}{rate:>9.1f}{pct(lat, 50):>9.2f}{pct(lat, 95):>9.2f}{rate_echo:>12.1f}"
                    f"{rate / rate_echo:>10.2e}"
                )
                print(f"{'  echo latency':<34}{'':>9}{pct(lat_echo, 50):>9.2f}{pct(lat_echo, 95):>9.2f}")
            rate, lat = await rest_equivalent(server.base, server.token, args.n)
            print(f"{'FHIR REST conditional create':<34}{rate:>9.1f}{pct(lat, 50):>9.2f}{pct(lat, 95):>9.2f}")
            rate = mapping_only(batch("A28", "MAP", args.n))
            print(f"HL7 layer alone (decode, parse, map, validate, ACK; no socket, no database): {rate:.0f} msg/s")
    finally:
        echo.terminate()
        await echo.wait()


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--echo":
        asyncio.run(echo_server(int(sys.argv[2])))
    else:
        asyncio.run(main())
