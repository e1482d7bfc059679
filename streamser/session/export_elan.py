"""An ELAN annotation document (EAF 3.0, ``.eaf``) from a session's tiers.

EAF is plain XML (schema: http://www.mpi.nl/tools/elan/EAFv3.0.xsd), so the standard library's
ElementTree writes it. The document holds, in the schema's order: a HEADER (the linked
recording as a MEDIA_DESCRIPTOR with an absolute and a relative URL, so ELAN finds it beside
the ``.eaf`` after both are moved together; the export's notes as PROPERTY elements), the
TIME_ORDER (every time slot, in milliseconds, as EAF counts), one TIER per tier (the stream as
the tier's PARTICIPANT) of ALIGNABLE_ANNOTATIONs, and the one time-alignable LINGUISTIC_TYPE
they share.

ELAN has no point tiers: a mark becomes an annotation of :data:`MARK_SPAN_S` (100 ms, as
pympi's TextGrid-to-EAF conversion does), cut short where the next mark begins.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

from streamser.session.export import MARK_JOINER, Annotation, SessionTiers, Tier

EAF_VERSION = "3.0"
EAF_SCHEMA_URL = "http://www.mpi.nl/tools/elan/EAFv3.0.xsd"
XSI_NAMESPACE = "http://www.w3.org/2001/XMLSchema-instance"
LINGUISTIC_TYPE_ID = "streamser"
MARK_SPAN_S = 0.1
"""How long a mark's annotation lasts in ELAN, which has no points."""
MS_PER_S = 1000
WAV_MIME_TYPE = "audio/x-wav"
NOTE_PROPERTY = "streamser:note"
LAST_ID_PROPERTY = "lastUsedAnnotationId"
"""The property ELAN reads to number the annotations a user adds next."""


@dataclass(frozen=True)
class MediaLink:
    """The recording an annotation file points at."""

    path: Path
    """The audio file, absolute."""
    relative_url: str
    """Its URL relative to the annotation file, e.g. ``./talk.wav``."""


def media_link(audio: Path) -> MediaLink:
    """A link to ``audio`` from an annotation file in the same directory."""
    return MediaLink(audio.resolve(), "./" + quote(audio.name))


def to_ms(t_s: float) -> int:
    """Seconds on the stream clock to EAF's whole milliseconds."""
    return round(t_s * MS_PER_S)


def eaf_document(
    tiers: SessionTiers, media: MediaLink | None, now: datetime | None = None
) -> ET.ElementTree:
    """The EAF document for ``tiers``, linking ``media`` when given."""
    when = now if now is not None else datetime.now().astimezone()
    root = ET.Element(
        "ANNOTATION_DOCUMENT",
        {
            "AUTHOR": "streamser",
            "DATE": when.isoformat(timespec="seconds"),
            "FORMAT": EAF_VERSION,
            "VERSION": EAF_VERSION,
            "xmlns:xsi": XSI_NAMESPACE,
            "xsi:noNamespaceSchemaLocation": EAF_SCHEMA_URL,
        },
    )
    header = ET.SubElement(root, "HEADER", {"MEDIA_FILE": "", "TIME_UNITS": "milliseconds"})
    if media is not None:
        ET.SubElement(
            header,
            "MEDIA_DESCRIPTOR",
            {
                "MEDIA_URL": media.path.as_uri(),
                "MIME_TYPE": WAV_MIME_TYPE,
                "RELATIVE_MEDIA_URL": media.relative_url,
            },
        )
    for note in tiers.notes:
        ET.SubElement(header, "PROPERTY", {"NAME": NOTE_PROPERTY}).text = note
    last_id = ET.SubElement(header, "PROPERTY", {"NAME": LAST_ID_PROPERTY})
    spans = [(tier, tier_spans(tier)) for tier in tiers.tiers]
    slot_ids = _time_slots(ET.SubElement(root, "TIME_ORDER"), spans)
    n_annotations = 0
    for tier, tier_ms in spans:
        attrs = {"TIER_ID": tier.name, "LINGUISTIC_TYPE_REF": LINGUISTIC_TYPE_ID}
        if tier.stream is not None:
            attrs["PARTICIPANT"] = tier.stream
        element = ET.SubElement(root, "TIER", attrs)
        for _start_ms, _end_ms, text in tier_ms:
            start_slot, end_slot = slot_ids[n_annotations]
            n_annotations += 1
            annotation = ET.SubElement(
                ET.SubElement(element, "ANNOTATION"),
                "ALIGNABLE_ANNOTATION",
                {
                    "ANNOTATION_ID": f"a{n_annotations}",
                    "TIME_SLOT_REF1": start_slot,
                    "TIME_SLOT_REF2": end_slot,
                },
            )
            ET.SubElement(annotation, "ANNOTATION_VALUE").text = text
    last_id.text = str(n_annotations)
    ET.SubElement(
        root,
        "LINGUISTIC_TYPE",
        {
            "LINGUISTIC_TYPE_ID": LINGUISTIC_TYPE_ID,
            "TIME_ALIGNABLE": "true",
            "GRAPHIC_REFERENCES": "false",
        },
    )
    tree = ET.ElementTree(root)
    ET.indent(tree)
    return tree


def tier_spans(tier: Tier) -> list[tuple[int, int, str]]:
    """The tier's annotations in milliseconds; intervals shorter than a millisecond vanish,
    points become :data:`MARK_SPAN_S` long (marks within one millisecond share one)."""
    if not tier.points:
        spans = [(to_ms(a.start_s), to_ms(a.end_s), a.text) for a in tier.annotations]
        return [s for s in spans if s[1] > s[0]]
    return _point_spans(tier.annotations)


def _point_spans(points: tuple[Annotation, ...]) -> list[tuple[int, int, str]]:
    merged: list[tuple[int, str]] = []
    for p in points:
        at = to_ms(p.start_s)
        if merged and merged[-1][0] == at:
            merged[-1] = (at, merged[-1][1] + MARK_JOINER + p.text)
        else:
            merged.append((at, p.text))
    span_ms = to_ms(MARK_SPAN_S)
    out: list[tuple[int, int, str]] = []
    for i, (at, text) in enumerate(merged):
        end = at + span_ms if i + 1 == len(merged) else min(at + span_ms, merged[i + 1][0])
        out.append((at, end, text))
    return out


def _time_slots(
    order: ET.Element, spans: list[tuple[Tier, list[tuple[int, int, str]]]]
) -> list[tuple[str, str]]:
    """Two time slots per annotation, numbered in time order as ELAN numbers them; returns
    each annotation's (start, end) slot ids, annotations in document order."""
    values: list[tuple[int, int]] = []  # (ms, index into the flat list of slots)
    for _tier, tier_ms in spans:
        for start_ms, end_ms, _text in tier_ms:
            values.append((start_ms, len(values)))
            values.append((end_ms, len(values)))
    ids = [""] * len(values)
    for n, (ms, index) in enumerate(sorted(values), start=1):
        ids[index] = f"ts{n}"
        ET.SubElement(order, "TIME_SLOT", {"TIME_SLOT_ID": f"ts{n}", "TIME_VALUE": str(ms)})
    return [(ids[i], ids[i + 1]) for i in range(0, len(ids), 2)]


def write_eaf(
    tiers: SessionTiers, media: MediaLink | None, f: IO[Any], now: datetime | None = None
) -> None:
    """Write the EAF document to the binary file ``f`` (UTF-8, with the XML declaration)."""
    eaf_document(tiers, media, now).write(f, encoding="UTF-8", xml_declaration=True)
