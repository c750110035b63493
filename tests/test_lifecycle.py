"""The real process: `fhir-server serve` on the embedded FerretDB, restarts, and start-up failures."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fhir_server.config import REPO_ROOT

CLI = [sys.executable, "-m", "fhir_server.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env_without_uri(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FHIR_")}
    env.update(extra)
    return env


class Server:
    def __init__(self, data_dir: Path, port: int, **env: str) -> None:
        self.data_dir, self.port = data_dir, port
        self.base = f"http://127.0.0.1:{port}/fhir"
        self.proc = subprocess.Popen(
            [*CLI, "serve", "--port", str(port), "--data-dir", str(data_dir)],
            env=env_without_uri(**env),
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited: {self.output()}")
            try:
                if httpx.get(f"{self.base}/metadata", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.2)
        raise AssertionError("server did not start")

    def token(self, scope: str = "system/*.*") -> str:
        out = subprocess.run(
            [*CLI, "token", "--scope", scope, "--data-dir", str(self.data_dir), "--port", str(self.port)],
            env=env_without_uri(),
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout.strip()

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30)

    def output(self) -> str:
        return self.proc.stdout.read().decode(errors="replace") if self.proc.stdout else ""


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "var"


def ferretdb_children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=,args=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(line.split()[0]) for line in out.splitlines() if "ferretdb-embedded" in line]


def test_data_survives_a_restart_and_ferretdb_follows_the_server(data_dir: Path) -> None:
    port = free_port()
    server = Server(data_dir, port)
    try:
        server.wait_ready()
        children = ferretdb_children(server.proc.pid)
        assert len(children) == 1
        token = server.token()
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"}
        r = httpx.post(f"{server.base}/Patient", json={"resourceType": "Patient", "gender": "female"}, headers=headers)
        assert r.status_code == 201, r.text
        pid = r.json()["id"]
    finally:
        assert server.stop() == 0
    # FerretDB was stopped with the server.
    assert not Path(f"/proc/{children[0]}").exists() or "zombie" in Path(f"/proc/{children[0]}/status").read_text()
    assert (data_dir / "ferretdb").is_dir()

    again = Server(data_dir, port)
    try:
        again.wait_ready()
        r = httpx.get(f"{again.base}/Patient/{pid}", headers={"Authorization": f"Bearer {again.token()}"})
        assert r.status_code == 200
        assert r.json()["gender"] == "female"
        # The token minted before the restart is still valid: the signing key lives in the data dir.
        r = httpx.get(f"{again.base}/Patient/{pid}", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200
    finally:
        again.stop()


def test_killed_server_takes_ferretdb_with_it(data_dir: Path) -> None:
    server = Server(data_dir, free_port())
    server.wait_ready()
    children = ferretdb_children(server.proc.pid)
    server.proc.kill()
    server.proc.wait(10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and Path(f"/proc/{children[0]}").exists():
        time.sleep(0.1)
    assert not Path(f"/proc/{children[0]}").exists()


def test_clear_error_when_ferretdb_binary_is_missing(data_dir: Path) -> None:
    server = Server(data_dir, free_port(), FHIR_FERRETDB_BIN="/nonexistent/ferretdb")
    code = server.proc.wait(60)
    output = server.output()
    assert code != 0
    assert "FerretDB binary not found at /nonexistent/ferretdb" in output
    assert "Traceback" not in output


def test_clear_error_when_data_dir_is_unusable(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    server = Server(blocker / "var", free_port())
    code = server.proc.wait(60)
    output = server.output()
    assert code != 0
    assert "Traceback" not in output
    assert "var" in output


def test_transaction_killed_midway_is_never_half_visible(data_dir: Path) -> None:
    import threading

    port = free_port()
    server = Server(data_dir, port)
    server.wait_ready()
    token = server.token()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"}
    n = 4000
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "request": {"method": "POST", "url": "Basic"},
                "resource": {"resourceType": "Basic", "code": {"text": "k"}},
            }
            for _ in range(n)
        ],
    }

    def send() -> None:
        try:
            httpx.post(server.base, json=bundle, headers=headers, timeout=120)
        except httpx.TransportError:
            pass  # the server is killed under it

    sender = threading.Thread(target=send)
    sender.start()
    time.sleep(1.5)
    server.proc.kill()
    server.proc.wait(10)
    sender.join(30)

    again = Server(data_dir, port)
    try:
        again.wait_ready()
        auth = {"Authorization": f"Bearer {again.token()}"}
        seen = []
        for _ in range(3):
            r = httpx.get(f"{again.base}/Basic", params={"_summary": "count"}, headers=auth)
            seen.append(r.json()["total"])
            hist = httpx.get(f"{again.base}/Basic/_history", params={"_count": "1"}, headers=auth).json()
            seen.append(hist["total"])
            time.sleep(0.5)
        assert all(t in (0, n) for t in seen), seen
    finally:
        again.stop()


def test_export_job_survives_a_restart(data_dir: Path) -> None:
    port = free_port()
    # An instance that queues jobs but runs none, as if it died before running them.
    first = Server(data_dir, port, FHIR_JOBS_ENABLED="false")
    first.wait_ready()
    auth = {"Authorization": f"Bearer {first.token()}"}
    r = httpx.post(
        f"{first.base}/Patient",
        json={"resourceType": "Patient", "gender": "male"},
        headers={**auth, "Content-Type": "application/fhir+json"},
    )
    assert r.status_code == 201
    r = httpx.get(f"{first.base}/$export", headers={**auth, "Prefer": "respond-async"})
    assert r.status_code == 202
    status_url = r.headers["Content-Location"]
    assert httpx.get(status_url, headers=auth).status_code == 202
    first.stop()

    second = Server(data_dir, port)
    try:
        second.wait_ready()
        for _ in range(100):
            r = httpx.get(status_url, headers=auth)
            if r.status_code == 200:
                break
            time.sleep(0.2)
        assert r.status_code == 200, r.text
        output = {o["type"]: o for o in r.json()["output"]}
        assert "Patient" in output
        lines = httpx.get(output["Patient"]["url"], headers=auth).text.splitlines()
        assert len(lines) == 1 and '"gender":"male"' in lines[0]
    finally:
        second.stop()


def test_serves_tls_itself(tmp_path: Path) -> None:
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    port = free_port()
    server = Server(
        tmp_path / "var",
        port,
        FHIR_TLS_CERT=str(cert_file),
        FHIR_TLS_KEY=str(key_file),
        FHIR_BASE_URL=f"https://127.0.0.1:{port}/fhir",
    )
    server.base = f"https://127.0.0.1:{port}/fhir"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                r = httpx.get(f"{server.base}/metadata", verify=False, timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        assert r.status_code == 200
        assert r.headers["strict-transport-security"].startswith("max-age=")
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{port}/fhir/metadata", timeout=2)
    finally:
        server.stop()
