"""Registered OAuth clients: from the configuration file (read-only) and from the `oauth_clients` collection.

The JSON shape of a client is documented in auth/oauth.py. Secrets are never stored: only their SHA-256
(client secrets are generated or required to be long random strings, not passwords).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pymongo.errors import DuplicateKeyError

from fhir_server.auth.jwks import check_client_jwks

AUTH_METHODS = ("private_key_jwt", "client_secret_basic", "none")
# The last one: RFC 8693 token exchange of a structure's OpenID token (auth/structure_token.py), never a default.
GRANT_TYPES = (
    "client_credentials",
    "authorization_code",
    "refresh_token",
    "urn:ietf:params:oauth:grant-type:token-exchange",
)
_CLIENT_ID = re.compile(r"^[A-Za-z0-9._~-]{1,128}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
MIN_SECRET_LENGTH = 16


class ClientError(ValueError):
    """A client description that cannot be registered (or an operation refused on one)."""


@dataclass(frozen=True)
class Client:
    client_id: str
    auth_method: str
    scopes: tuple[str, ...]
    grant_types: frozenset[str]
    redirect_uris: tuple[str, ...] = ()
    jwks: dict[str, Any] | None = None
    secret_sha256: str | None = None
    name: str = ""
    source: str = "api"  # "file" or "api"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def public(self) -> bool:
        return self.auth_method == "none"

    def check_secret(self, secret: str) -> bool:
        if not self.secret_sha256:
            return False
        return hmac.compare_digest(hash_secret(secret), self.secret_sha256)

    def describe(self) -> dict[str, Any]:
        """The client as the admin API shows it (no secret)."""
        out: dict[str, Any] = {
            "client_id": self.client_id,
            "client_name": self.name,
            "token_endpoint_auth_method": self.auth_method,
            "grant_types": sorted(self.grant_types),
            "scope": " ".join(self.scopes),
            "source": self.source,
        }
        if self.redirect_uris:
            out["redirect_uris"] = list(self.redirect_uris)
        if self.jwks:
            out["jwks"] = self.jwks
        return out


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def parse_client(data: Any, source: str = "api") -> Client:
    if not isinstance(data, dict):
        raise ClientError("a client must be a JSON object")
    client_id = data.get("client_id")
    if not isinstance(client_id, str) or not _CLIENT_ID.match(client_id):
        raise ClientError("client_id must be 1-128 characters among A-Z a-z 0-9 . _ ~ -")
    method = data.get("token_endpoint_auth_method")
    if method not in AUTH_METHODS:
        raise ClientError(f"token_endpoint_auth_method must be one of {', '.join(AUTH_METHODS)}")
    scope = data.get("scope")
    if isinstance(scope, list):
        scope = " ".join(str(s) for s in scope)
    if not isinstance(scope, str) or not scope.split():
        raise ClientError("scope (the scopes the client may be granted, space-separated) is required")
    default_grants = ["client_credentials"] if method == "private_key_jwt" else ["authorization_code", "refresh_token"]
    grants = data.get("grant_types", default_grants)
    if not isinstance(grants, list) or not grants or any(g not in GRANT_TYPES for g in grants):
        raise ClientError(f"grant_types must be a non-empty list among {', '.join(GRANT_TYPES)}")
    if method == "none" and "client_credentials" in grants:
        raise ClientError("a public client (token_endpoint_auth_method none) cannot use client_credentials")
    redirect_uris = data.get("redirect_uris", [])
    if not isinstance(redirect_uris, list) or any(not isinstance(u, str) for u in redirect_uris):
        raise ClientError("redirect_uris must be a list of URLs")
    for uri in redirect_uris:
        parts = urlsplit(uri)
        if parts.scheme not in ("https", "http") or not parts.netloc or parts.fragment or "#" in uri:
            raise ClientError(f"redirect URI {uri!r} must be an absolute http(s) URL without fragment")
    if "authorization_code" in grants and not redirect_uris:
        raise ClientError("the authorization_code grant needs at least one redirect_uri")
    jwks = None
    secret_sha256 = None
    if method == "private_key_jwt":
        if "jwks_uri" in data and "jwks" not in data:
            raise ClientError("jwks_uri is not supported yet: register the public keys inline as jwks")
        try:
            jwks = {"keys": check_client_jwks(data.get("jwks"))}
        except ValueError as exc:
            raise ClientError(str(exc)) from None
    elif method == "client_secret_basic":
        secret = data.get("client_secret")
        secret_sha256 = data.get("client_secret_sha256")
        if secret is not None:
            if not isinstance(secret, str) or len(secret) < MIN_SECRET_LENGTH:
                raise ClientError(f"client_secret must be at least {MIN_SECRET_LENGTH} characters")
            secret_sha256 = hash_secret(secret)
        if not isinstance(secret_sha256, str) or not _SHA256.match(secret_sha256):
            raise ClientError("client_secret_basic needs client_secret (or client_secret_sha256, hex)")
    name = data.get("client_name", "")
    return Client(
        client_id=client_id,
        auth_method=method,
        scopes=tuple(dict.fromkeys(scope.split())),
        grant_types=frozenset(grants),
        redirect_uris=tuple(redirect_uris),
        jwks=jwks,
        secret_sha256=secret_sha256,
        name=name if isinstance(name, str) else "",
        source=source,
    )


def to_document(client: Client) -> dict[str, Any]:
    return {
        "_id": client.client_id,
        "client_name": client.name,
        "token_endpoint_auth_method": client.auth_method,
        "scope": " ".join(client.scopes),
        "grant_types": sorted(client.grant_types),
        "redirect_uris": list(client.redirect_uris),
        "jwks": client.jwks,
        "client_secret_sha256": client.secret_sha256,
    }


def from_document(doc: dict[str, Any]) -> Client:
    return Client(
        client_id=doc["_id"],
        auth_method=doc["token_endpoint_auth_method"],
        scopes=tuple(doc["scope"].split()),
        grant_types=frozenset(doc["grant_types"]),
        redirect_uris=tuple(doc.get("redirect_uris") or ()),
        jwks=doc.get("jwks"),
        secret_sha256=doc.get("client_secret_sha256"),
        name=doc.get("client_name") or "",
        source="api",
    )


class ClientRegistry:
    """Clients of the configuration file (re-read when it changes) first, then those of the database."""

    def __init__(self, collection: Any, path: Path | None) -> None:
        self.collection = collection
        self.path = path
        self._file_clients: dict[str, Client] = {}
        self._file_stamp: int | None = None

    def file_clients(self) -> dict[str, Client]:
        if self.path is None:
            return {}
        try:
            stamp = self.path.stat().st_mtime_ns
        except OSError as exc:  # a missing configured file is an error, not "no clients"
            raise ClientError(f"the OAuth clients file cannot be read: {exc}") from None
        if stamp != self._file_stamp:
            try:
                entries = json.loads(self.path.read_text())
            except ValueError as exc:
                raise ClientError(f"{self.path}: not valid JSON: {exc}") from None
            if not isinstance(entries, list):
                raise ClientError(f"{self.path}: must hold a JSON list of clients")
            clients: dict[str, Client] = {}
            for entry in entries:
                try:
                    client = parse_client(entry, source="file")
                except ClientError as exc:
                    raise ClientError(f"{self.path}: {exc}") from None
                if client.client_id in clients:
                    raise ClientError(f"{self.path}: client_id {client.client_id!r} appears twice")
                clients[client.client_id] = client
            self._file_clients, self._file_stamp = clients, stamp
        return self._file_clients

    async def get(self, client_id: str) -> Client | None:
        client = self.file_clients().get(client_id)
        if client is not None:
            return client
        doc = await self.collection.find_one({"_id": client_id})
        return from_document(doc) if doc else None

    async def all(self) -> list[Client]:
        clients = list(self.file_clients().values())
        async for doc in self.collection.find({}).sort("_id", 1):
            if doc["_id"] not in self.file_clients():
                clients.append(from_document(doc))
        return clients

    async def add(self, client: Client) -> None:
        if client.client_id in self.file_clients():
            raise ClientError(f"client {client.client_id!r} is defined in the configuration file")
        try:
            await self.collection.insert_one(to_document(client))
        except DuplicateKeyError:
            raise ClientError(f"client {client.client_id!r} already exists") from None

    async def delete(self, client_id: str) -> bool:
        if client_id in self.file_clients():
            raise ClientError(f"client {client_id!r} is defined in the configuration file: remove it there")
        result = await self.collection.delete_one({"_id": client_id})
        return result.deleted_count == 1
