"""The HL7 v2 MLLP listener (asyncio): framing 0x0B <message> 0x1C 0x0D, one ACK per message.

Every message is stored in `hl7v2_inbound` (`_id` = MSH-3|MSH-10) before it is processed and
acknowledged; a message whose id is already stored with an ACK gets that same ACK again and is not
processed twice (a message stored but never acknowledged, because the server died, is processed when
the sender sends it again). Each processed message writes an AuditEvent (`audit.record_hl7`) before
its ACK leaves. Started by the app's lifespan when FHIR_MLLP_PORT is set; the mappings are in
`mappings/hl7v2/` (`inbound.py` dispatches by message type).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from pymongo.errors import DuplicateKeyError

from fhir_server import audit
from mappings.hl7v2 import inbound
from mappings.hl7v2.ack import ERR_APPLICATION_INTERNAL, Header, HL7Reject, Processed, build_ack, decode

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
        address = writer.get_extra_info("peername")
        peer = address[0] if isinstance(address, tuple) else str(address or "unknown")
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
                ack, charset = await self.handle(frame[start + 1 : -len(END)], peer)
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

    async def handle(self, raw: bytes, peer: str = "unknown") -> tuple[str, str]:
        """The ACK (text, codec) for one inbound message."""
        try:
            text, header = decode(raw)
        except HL7Reject as exc:
            try:
                await self._audit(peer, None, exc.code, exc.text, [])
            except Exception:
                log.exception("audit write failed for an unreadable message")
            return build_ack(None, "AR", exc.text, exc.err), "utf-8"
        inbound_docs = self.ctx.database.db[INBOUND]
        key = f"{header.sender}|{header.control_id}"
        doc = {"_id": key, "raw": text, "charset": header.charset, "received": datetime.now(UTC), "peer": peer}
        try:
            await inbound_docs.insert_one(doc)
        except DuplicateKeyError:
            previous = await inbound_docs.find_one({"_id": key}, {"ack": 1})
            if previous and previous.get("ack"):
                return previous["ack"], header.charset
            # Stored but never acknowledged (crash, or the same message on two connections): process it.
        ack, status, done = await self._process(text, header)
        try:
            await self._audit(peer, header, status, done.text, done.resources)
        except Exception:
            log.exception("audit write failed", extra={"control_id": header.control_id})
            # Not acknowledged as done: the sender sends it again and it is processed again (idempotent).
            return build_ack(header, "AE", "the audit trail could not be written", ERR_APPLICATION_INTERNAL), (
                header.charset
            )
        await inbound_docs.update_one(
            {"_id": key},
            {"$set": {"ack": ack, "status": status, "resources": done.resources, "processed": datetime.now(UTC)}},
        )
        return ack, header.charset

    async def _process(self, text: str, header: Header) -> tuple[str, str, Processed]:
        try:
            msg = inbound.parse(text, self.settings)
            done = await inbound.process(self.ctx, msg)
            return build_ack(header, "AA", done.text), "AA", done
        except HL7Reject as exc:
            return build_ack(header, exc.code, exc.text, exc.err), exc.code, Processed(exc.text)
        except Exception:
            log.exception("HL7 v2 message processing failed", extra={"control_id": header.control_id})
            text = "internal error"
            return build_ack(header, "AE", text, ERR_APPLICATION_INTERNAL), "AE", Processed(text)

    async def _audit(self, peer: str, header: Header | None, code: str, text: str, resources: list[str]) -> None:
        await audit.record_hl7(
            self.ctx,
            inbound=True,
            peer=peer,
            application=header.sender if header else "",
            message_type=header.component(9, 1) if header else "",
            trigger=header.component(9, 2) if header else "",
            control_id=header.control_id if header else "",
            ack_code=code,
            text=text,
            resources=resources,
        )
