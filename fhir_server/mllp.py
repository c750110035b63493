"""The HL7 v2 MLLP listener (asyncio): framing 0x0B <message> 0x1C 0x0D, one ACK per message.

Every message is stored in `hl7v2_inbound` (`_id` = MSH-3|MSH-10) before it is processed and
acknowledged; a message whose id is already stored with an ACK gets that same ACK again and is not
processed twice. Started by the app's lifespan when FHIR_MLLP_PORT is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from pymongo.errors import DuplicateKeyError

from mappings.hl7v2 import adt
from mappings.hl7v2.ack import ERR_APPLICATION_INTERNAL, Header, HL7Reject, build_ack, decode

if TYPE_CHECKING:
    from fhir_server.context import ServerContext

log = logging.getLogger(__name__)
START, END = b"\x0b", b"\x1c\x0d"
INBOUND = "hl7v2_inbound"


class MLLPServer:
    def __init__(self, ctx: ServerContext, host: str, port: int) -> None:
        self.ctx, self.host, self.port = ctx, host, port
        self.server: asyncio.Server | None = None
        self.settings = ctx.settings

    async def start(self) -> None:
        self.server = await asyncio.start_server(
            self._connection, self.host, self.port, limit=self.settings.mllp_max_message_bytes
        )
        self.port = self.server.sockets[0].getsockname()[1]
        log.info("MLLP listener ready", extra={"host": self.host, "port": self.port})

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            if hasattr(self.server, "close_clients"):  # Python 3.13+
                self.server.close_clients()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 5)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    frame = await reader.readuntil(END)
                except asyncio.IncompleteReadError:
                    return  # peer closed
                except asyncio.LimitOverrunError:
                    log.warning("MLLP frame over the size limit; closing the connection")
                    return
                start = frame.find(START)
                if start < 0:
                    continue  # garbage before a frame
                ack, charset = await self.handle(frame[start + 1 : -len(END)])
                writer.write(START + ack.encode(charset, errors="replace") + END)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        except Exception:
            log.exception("MLLP connection failed")
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def handle(self, raw: bytes) -> tuple[str, str]:
        """The ACK (text, codec) for one inbound message."""
        try:
            text, header = decode(raw)
        except HL7Reject as exc:
            return build_ack(None, "AR", exc.text, exc.err), "utf-8"
        inbound = self.ctx.database.db[INBOUND]
        key = f"{header.sender}|{header.control_id}"
        doc = {"_id": key, "raw": text, "charset": header.charset, "received": datetime.now(UTC)}
        try:
            await inbound.insert_one(doc)
        except DuplicateKeyError:
            previous = await inbound.find_one({"_id": key}, {"ack": 1})
            if previous and previous.get("ack"):
                return previous["ack"], header.charset
            # Stored but never acknowledged (crash, or the same message on two connections): process it.
        ack, status = await self._process(text, header)
        await inbound.update_one({"_id": key}, {"$set": {"ack": ack, "status": status, "processed": datetime.now(UTC)}})
        return ack, header.charset

    async def _process(self, text: str, header: Header) -> tuple[str, str]:
        try:
            msg = adt.parse(text)
            done = await adt.process(
                self.ctx, msg, self.settings.hl7v2_identifier_systems, self.settings.hl7v2_timezone
            )
            return build_ack(header, "AA", done), "AA"
        except HL7Reject as exc:
            return build_ack(header, exc.code, exc.text, exc.err), exc.code
        except Exception:
            log.exception("HL7 v2 message processing failed", extra={"control_id": header.control_id})
            return build_ack(header, "AE", "internal error", ERR_APPLICATION_INTERNAL), "AE"
