"""The server's token-signing key, kept in the data directory (created on first use, mode 0600)."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey


def key_path(data_dir: Path) -> Path:
    return data_dir / "keys" / "token-signing.pem"


def load_or_create_signing_key(data_dir: Path) -> RSAPrivateKey:
    path = key_path(data_dir)
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        assert isinstance(key, RSAPrivateKey)
        return key
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    # Write then rename, so two processes starting at once never read a half-written key.
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    try:
        os.link(tmp, path)  # fails if another process won the race: use its key
    except FileExistsError:
        tmp.unlink()
        return load_or_create_signing_key(data_dir)
    tmp.unlink()
    return key
