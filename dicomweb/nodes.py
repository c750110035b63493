"""The DICOM nodes this server knows: where C-MOVE sends, what C-STORE export and query/retrieve talk to.

One setting, `FHIR_DICOM_NODES`, a JSON object keyed by AE title:

    FHIR_DICOM_NODES='{"PACS": {"host": "10.0.0.5", "port": 104}, "WORKSTATION": {"host": "ws1", "port": 11112}}'

A node is addressed by its AE title everywhere (the C-MOVE destination, the `node` parameter of
`ImagingStudy/$retrieve` and `$export-dicom`). DIMSE has no other notion of identity: an AE title plus
the network address is all a PACS checks, so the list is also what `FHIR_DICOM_KNOWN_CALLERS_ONLY`
restricts incoming associations to.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fhir_server.config import Settings


class UnknownNode(LookupError):
    """No node with that AE title is configured."""


@dataclass(frozen=True)
class DicomNode:
    aet: str
    host: str
    port: int


def valid_aet(aet: str) -> bool:
    # PS3.5 AE VR: at most 16 characters, no backslash or control characters, not only spaces.
    return 0 < len(aet) <= 16 and aet.strip() != "" and all(32 <= ord(c) < 127 and c != "\\" for c in aet)


def parse_nodes(raw: dict[str, Any]) -> dict[str, DicomNode]:
    """The nodes of the setting; ValueError naming the first bad entry."""
    nodes: dict[str, DicomNode] = {}
    for aet, spec in raw.items():
        if not valid_aet(aet):
            raise ValueError(f"FHIR_DICOM_NODES: {aet!r} is not a valid AE title (1-16 printable characters)")
        if not isinstance(spec, dict) or not isinstance(spec.get("host"), str) or not spec["host"]:
            raise ValueError(f'FHIR_DICOM_NODES: {aet!r} needs a "host" string')
        port = spec.get("port")
        if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
            raise ValueError(f'FHIR_DICOM_NODES: {aet!r} needs a "port" between 1 and 65535')
        nodes[aet.strip()] = DicomNode(aet.strip(), spec["host"], port)
    return nodes


def known_nodes(settings: Settings) -> dict[str, DicomNode]:
    return parse_nodes(settings.dicom_nodes)


def node(settings: Settings, aet: str) -> DicomNode:
    found = known_nodes(settings).get(aet.strip())
    if found is None:
        raise UnknownNode(f"no DICOM node {aet!r} is configured (FHIR_DICOM_NODES)")
    return found
