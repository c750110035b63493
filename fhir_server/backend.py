"""Opening the database the server runs on: an external MongoDB, or the embedded FerretDB."""

from __future__ import annotations

from dataclasses import dataclass

from pymongo.errors import PyMongoError

from fhir_server.config import Settings
from fhir_server.ferretdb import EmbeddedDatabaseError, EmbeddedFerretDB
from fhir_server.storage.database import Database


class StartupError(RuntimeError):
    """The server cannot start; the message tells the operator why."""


@dataclass
class Backend:
    database: Database
    embedded: EmbeddedFerretDB | None

    async def close(self) -> None:
        self.database.close()
        if self.embedded:
            await self.embedded.stop()


async def open_backend(settings: Settings) -> Backend:
    embedded: EmbeddedFerretDB | None = None
    uri = settings.mongodb_uri
    if not uri:
        try:
            settings.data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StartupError(f"cannot create the data directory {settings.data_dir}: {exc}") from None
        embedded = EmbeddedFerretDB(
            settings.resolved_ferretdb_bin(), settings.data_dir, settings.ferretdb_start_timeout
        )
        try:
            uri = await embedded.start()
        except EmbeddedDatabaseError as exc:
            raise StartupError(str(exc)) from None
    try:
        database = await Database.connect(uri, settings.database)
    except PyMongoError as exc:
        if embedded:
            await embedded.stop()
        where = "the embedded FerretDB" if embedded else "FHIR_MONGODB_URI"
        raise StartupError(f"cannot reach the database ({where}): {exc}") from None
    return Backend(database, embedded)
