"""`fhir-server serve` runs the server; `fhir-server token` prints an access token for scripts and tests."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from pathlib import Path

from fhir_server.config import Settings


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {k: v for k, v in vars(args).items() if k in Settings.model_fields and v is not None}
    return Settings(**overrides)


class _Stopped(Exception):
    pass


async def _serve(settings: Settings) -> int:
    import uvicorn

    from fhir_server.app import create_app
    from fhir_server.backend import StartupError, open_backend

    try:
        backend = await open_backend(settings)
    except StartupError as exc:
        logging.getLogger("fhir_server").error("cannot start: %s", exc)
        return 2

    def stop(signum: int, frame: object) -> None:
        raise _Stopped

    # uvicorn handles SIGTERM/SIGINT while serving, then re-raises the signal once it has shut down;
    # this handler turns that re-raise into a normal return, so the database is closed cleanly and
    # a requested stop exits 0.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop)
    try:
        config = uvicorn.Config(
            create_app(settings, backend),
            host=settings.host,
            port=settings.port,
            log_config=None,
            ssl_certfile=str(settings.tls_cert) if settings.tls_cert else None,
            ssl_keyfile=str(settings.tls_key) if settings.tls_key else None,
            proxy_headers=True,
            server_header=False,
        )
        server = uvicorn.Server(config)
        try:
            await server.serve()
        except _Stopped:
            pass
        return 0 if server.started else 2
    finally:
        await backend.close()


def serve(args: argparse.Namespace) -> int:
    from fhir_server.logs import configure_logging

    settings = _settings(args)
    configure_logging(settings.log_level)
    return asyncio.run(_serve(settings))


def token(args: argparse.Namespace) -> int:
    from fhir_server.auth.tokens import ADMIN_CLIENT, mint_token

    settings = _settings(args)
    lifetime = args.lifetime or settings.token_lifetime_seconds
    extra: dict[str, str] = {}
    if args.user:
        extra["fhirUser"] = args.user
    if args.patient:
        extra["patient"] = args.patient
    access = mint_token(
        settings.data_dir,
        issuer=settings.resolved_token_issuer(),
        audience=settings.resolved_base_url(),
        scope=args.scope,
        lifetime=lifetime,
        subject=args.user or ADMIN_CLIENT,
        extra=extra,
    )
    if args.json:
        out = {"access_token": access, "token_type": "Bearer", "expires_in": lifetime, "scope": args.scope}
        print(json.dumps(out))
    else:
        print(access)
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fhir-server", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--data-dir", type=Path, help="data directory (default ./var, env FHIR_DATA_DIR)")
        sp.add_argument("--host", help="listen address (default 127.0.0.1, env FHIR_HOST)")
        sp.add_argument("--port", type=int, help="listen port (default 8080, env FHIR_PORT)")
        sp.add_argument("--base-url", help="public base URL of the FHIR endpoint (env FHIR_BASE_URL)")

    s = sub.add_parser("serve", help="serve FHIR R4 over HTTP")
    common(s)
    s.set_defaults(func=serve)

    t = sub.add_parser("token", help="print an access token for the local admin client")
    common(t)
    t.add_argument("--scope", required=True, help='e.g. "system/*.*" or "system/Patient.rs"')
    t.add_argument("--user", help="act as this user: Practitioner/ID, RelatedPerson/ID or Patient/ID (fhirUser)")
    t.add_argument("--patient", help="launch context patient id (confines patient/ scopes to its compartment)")
    t.add_argument("--lifetime", type=int, help="seconds (default FHIR_TOKEN_LIFETIME_SECONDS)")
    t.add_argument("--json", action="store_true", help="print an OAuth token response instead of the token")
    t.set_defaults(func=token)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
