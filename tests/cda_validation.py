"""Test-time CDA validation: the CDA XSD (lxml) and the ANS CI-SIS schematrons (saxonche + the ISO
schematron XSLT1 skeleton that ships inside lxml), after the recipe in ../shared/cda/README.md.

Used by the tests only: it reads ../shared/cda (the server never does). Compiling a schematron takes
seconds (about 10 s for structuration minimale), so validators are compiled once per test session and
cached by path.
"""

from __future__ import annotations

import atexit
import gc
import re
import threading
from functools import cache
from pathlib import Path

import lxml
from lxml import etree
from saxonche import PySaxonProcessor

REPO_ROOT = Path(__file__).resolve().parent.parent
CDA_DIR = REPO_ROOT.parent / "shared" / "cda"
XSD = CDA_DIR / "xsd" / "CDA_extended.xsd"
SCHEMATRONS = CDA_DIR / "schematrons"
STRUC_MIN = SCHEMATRONS / "profils" / "structurationMinimale" / "ASIP-STRUCT-MIN-StrucMin.sch"
EXAMPLES = CDA_DIR / "examples"

SKELETON = Path(lxml.__file__).parent / "isoschematron" / "resources" / "xsl" / "iso-schematron-xslt1"
SCH_NS = "{http://purl.oclc.org/dsdl/schematron}"
SVRL_NS = "{http://purl.oclc.org/dsdl/svrl}"

_LOCAL_NAME = re.compile(r"\*\[local-name\(\)='([^']+)' and namespace-uri\(\)='[^']*'\]")
_lock = threading.Lock()  # SaxonC is not meant to be driven from several threads at once


@cache
def _processor() -> PySaxonProcessor:
    proc = PySaxonProcessor(license=False)
    # saxonche 13.x crashes on loop-lifting while compiling the generated stylesheet; harmless on 12.x.
    proc.set_configuration_property("http://saxon.sf.net/feature/optimizationLevel", "-l")
    return proc


@cache
def _schema() -> etree.XMLSchema:
    return etree.XMLSchema(file=str(XSD))


def xsd_errors(xml: bytes) -> list[str]:
    """Messages of the CDA_extended.xsd validation ([] when valid)."""
    schema = _schema()
    doc = etree.fromstring(xml, parser=etree.XMLParser(resolve_entities=False, no_network=True))
    if schema.validate(doc):
        return []
    return [f"line {e.line}: {e.message}" for e in schema.error_log]


def _fix_case(base: Path, href: str) -> str:
    """Windows-authored include hrefs: match each path part case-insensitively against the disk."""
    cur, out = base, []
    for part in href.split("/"):
        if part not in ("..", ".") and not (cur / part).exists() and cur.is_dir():
            part = next((c.name for c in cur.iterdir() if c.name.lower() == part.lower()), part)
        out.append(part)
        cur = cur / part
    return "/".join(out)


@cache
def _compiled(sch_path: str):
    proc = _processor()
    sch = Path(sch_path).resolve()
    xp = proc.new_xslt30_processor()

    def step(name: str, node) -> str:
        return xp.compile_stylesheet(stylesheet_file=str(SKELETON / name)).transform_to_string(xdm_node=node)

    top = etree.parse(str(sch))
    for inc in top.iter(SCH_NS + "include"):
        inc.set("href", _fix_case(sch.parent, inc.get("href")))
    builder = proc.new_document_builder()
    builder.set_base_uri(sch.as_uri())
    text = step("iso_dsdl_include.xsl", builder.parse_xml(xml_text=etree.tostring(top, encoding="unicode")))
    text = step("iso_abstract_expand.xsl", proc.parse_xml(xml_text=text))
    text = step(
        "iso_svrl_for_xslt1.xsl",
        proc.parse_xml(xml_text=text.replace('queryBinding="xslt2"', 'queryBinding="xslt"', 1)),
    )
    text = text.replace('version="1.0">', 'version="2.0">', 1)
    text = text.replace("<xsl:stylesheet ", f'<xsl:stylesheet xml:base="{sch.as_uri()}" ', 1)
    return xp.compile_stylesheet(stylesheet_text=text)


def failed_asserts(xml: bytes, sch: Path = STRUC_MIN) -> list[str]:
    """Texts of the schematron's failed asserts on the document ([] when it passes)."""
    with _lock:
        validator = _compiled(str(sch))
        node = _processor().parse_xml(xml_text=xml.decode("utf-8"))
        svrl_text = validator.transform_to_string(xdm_node=node)
    svrl = etree.fromstring(svrl_text.encode("utf-8"))
    return [
        "[" + _LOCAL_NAME.sub(r"\1", fa.get("location") or "") + "] " + " ".join("".join(fa.itertext()).split())
        for fa in svrl.iter(SVRL_NS + "failed-assert")
    ]


def volet_schematron(name: str) -> Path:
    """`CI-SIS_<name>.sch` in ../shared/cda/schematrons (e.g. 'TLM-DA_2022.01')."""
    return SCHEMATRONS / f"CI-SIS_{name}.sch"


@atexit.register
def _release() -> None:
    """Drop the Saxon objects before the interpreter tears down (else SaxonC prints a stray
    "Error in sys.excepthook" at exit under pytest)."""
    _compiled.cache_clear()
    _processor.cache_clear()
    gc.collect()
