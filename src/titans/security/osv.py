"""Match pinned Python packages against an offline OSV vulnerability export.

The export may be one OSV JSON record, a JSON list of records, a directory of ``*.json``
records, or osv.dev's per-ecosystem ``all.zip``. Version ranges follow the OSV schema:
``affected[].versions`` lists exact versions, ``affected[].ranges`` of type ECOSYSTEM or
SEMVER hold ``introduced`` / ``fixed`` / ``last_affected`` events, compared with
:mod:`packaging.version` (GIT ranges name commits and are ignored).

>>> record = {"id": "X-1", "affected": [{"package": {"ecosystem": "PyPI", "name": "Demo_Pkg"},
...     "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "2.0"}]}]}]}
>>> db = OsvDatabase([record])
>>> [v.id for v in db.match("demo-pkg", "1.9")], db.match("demo-pkg", "2.0")
(['X-1'], [])
"""

from __future__ import annotations

import json
import logging
import math
import re
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.version import InvalidVersion, Version

from titans.errors import InputError

log = logging.getLogger(__name__)


def normalize_name(name: str) -> str:
    """PEP 503 normalised project name.

    >>> normalize_name("Foo.Bar_baz")
    'foo-bar-baz'
    """
    return re.sub(r"[-_.]+", "-", name).lower()


def _version(text: str) -> Version | None:
    try:
        return Version(text)
    except InvalidVersion:
        return None


def range_affects(events: list[dict[str, str]], version: Version) -> bool:
    """Whether ``version`` falls in an OSV ECOSYSTEM/SEMVER range given by its events.

    Events are applied in version order: ``introduced`` opens the range at that version,
    ``fixed`` closes it at that version (excluded), ``last_affected`` closes it after it.

    >>> ev = [{"introduced": "1.0"}, {"fixed": "1.5"}, {"introduced": "2.0"},
    ...       {"last_affected": "2.1"}]
    >>> [range_affects(ev, Version(v)) for v in ("0.9", "1.0", "1.4.9", "1.5", "2.1", "2.1.1")]
    [False, True, True, False, True, False]
    """
    parsed: list[tuple[Version, int, str]] = []
    for event in events:
        for kind, order in (("introduced", 0), ("fixed", 1), ("last_affected", 2)):
            if kind not in event:
                continue
            raw = event[kind]
            at = Version("0") if kind == "introduced" and raw == "0" else _version(raw)
            if at is None:
                log.warning("OSV event %s=%r is not a PEP 440 version; ignored", kind, raw)
                continue
            parsed.append((at, order, kind))
    affected = False
    for at, _, kind in sorted(parsed):
        if kind == "introduced" and version >= at:
            affected = True
        elif (kind == "fixed" and version >= at) or (kind == "last_affected" and version > at):
            affected = False
    return affected


# CVSS v3.x base score (FIRST specification, section 7.1)
_AV = {"N": 0.85, "A": 0.62, "L": 0.55, "P": 0.2}
_AC = {"L": 0.77, "H": 0.44}
_UI = {"N": 0.85, "R": 0.62}
_CIA = {"H": 0.56, "L": 0.22, "N": 0.0}


def _roundup(value: float) -> float:
    scaled = round(value * 100000)
    return scaled / 100000.0 if scaled % 10000 == 0 else (math.floor(scaled / 10000) + 1) / 10.0


def cvss3_base_score(vector: str) -> float | None:
    """Base score of a CVSS:3.x vector, or None when it is not one.

    >>> cvss3_base_score("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H")
    9.8
    >>> cvss3_base_score("CVSS:3.1/AV:N/AC:H/PR:N/UI:R/S:C/C:L/I:N/A:N")
    3.4
    """
    if not vector.startswith("CVSS:3"):
        return None
    try:
        m = dict(part.split(":", 1) for part in vector.split("/")[1:])
        changed = m["S"] == "C"
        pr = {"N": 0.85, "L": 0.68 if changed else 0.62, "H": 0.5 if changed else 0.27}[m["PR"]]
        iss = 1 - (1 - _CIA[m["C"]]) * (1 - _CIA[m["I"]]) * (1 - _CIA[m["A"]])
        impact = 7.52 * (iss - 0.029) - 3.25 * (iss - 0.02) ** 15 if changed else 6.42 * iss
        exploitability = 8.22 * _AV[m["AV"]] * _AC[m["AC"]] * pr * _UI[m["UI"]]
    except (KeyError, ValueError):
        return None
    if impact <= 0:
        return 0.0
    total = 1.08 * (impact + exploitability) if changed else impact + exploitability
    return _roundup(min(total, 10.0))


def severity_from_score(score: float) -> str:
    """CVSS qualitative rating: none/low → low, then medium, high, critical."""
    if score >= 9.0:
        return "critical"
    if score >= 7.0:
        return "high"
    if score >= 4.0:
        return "medium"
    return "low"


def record_severity(record: dict[str, Any]) -> str:
    """Severity of an OSV record: the advisory's own rating, else its CVSS v3 score, else
    ``unknown`` (gated as high)."""
    rating = str((record.get("database_specific") or {}).get("severity", "")).lower()
    if rating == "moderate":
        rating = "medium"
    if rating in {"low", "medium", "high", "critical"}:
        return rating
    scores = [
        cvss3_base_score(str(s.get("score", "")))
        for s in record.get("severity") or []
        if str(s.get("type", "")).startswith("CVSS_V3")
    ]
    known = [s for s in scores if s is not None]
    return severity_from_score(max(known)) if known else "unknown"


@dataclass
class OsvVulnerability:
    """One vulnerability that affects a pinned version."""

    id: str
    package: str
    version: str
    severity: str
    summary: str
    aliases: list[str] = field(default_factory=list)
    fixed_versions: list[str] = field(default_factory=list)


class OsvDatabase:
    """OSV records indexed by normalised PyPI package name."""

    def __init__(self, records: Iterable[dict[str, Any]]) -> None:
        self._by_package: dict[str, list[tuple[dict[str, Any], dict[str, Any]]]] = {}
        self.record_count = 0
        for record in records:
            self.record_count += 1
            if record.get("withdrawn"):
                continue
            for affected in record.get("affected") or []:
                package = affected.get("package") or {}
                if str(package.get("ecosystem", "")).split(":")[0] != "PyPI":
                    continue
                name = normalize_name(str(package.get("name", "")))
                self._by_package.setdefault(name, []).append((record, affected))

    @classmethod
    def load(cls, path: Path) -> OsvDatabase:
        """Read an export: a JSON record or list, a directory of JSON files, or a zip."""
        path = Path(path)
        if not path.exists():
            raise InputError(f"OSV database {path} does not exist; pass an OSV JSON export")
        try:
            if path.is_dir():
                return cls(_flatten(json.loads(p.read_text()) for p in sorted(path.glob("*.json"))))
            if zipfile.is_zipfile(path):
                with zipfile.ZipFile(path) as archive:
                    docs = [
                        json.loads(archive.read(n))
                        for n in archive.namelist()
                        if n.endswith(".json")
                    ]
                return cls(_flatten(docs))
            return cls(_flatten([json.loads(path.read_text())]))
        except (ValueError, OSError) as exc:
            raise InputError(
                f"OSV database {path} could not be read ({exc}); pass OSV JSON records"
            ) from exc

    def match(self, package: str, version: str) -> list[OsvVulnerability]:
        """The vulnerabilities affecting ``package==version``."""
        pinned = _version(version)
        found: dict[str, OsvVulnerability] = {}
        for record, affected in self._by_package.get(normalize_name(package), []):
            hit = version in (affected.get("versions") or [])
            fixes: list[str] = []
            for rng in affected.get("ranges") or []:
                if rng.get("type") not in {"ECOSYSTEM", "SEMVER"}:
                    continue
                events = rng.get("events") or []
                fixes += [e["fixed"] for e in events if "fixed" in e]
                if pinned is not None and range_affects(events, pinned):
                    hit = True
            if hit and record["id"] not in found:
                found[record["id"]] = OsvVulnerability(
                    id=str(record["id"]),
                    package=package,
                    version=version,
                    severity=record_severity(record),
                    summary=str(record.get("summary") or record.get("details", ""))[:300],
                    aliases=list(record.get("aliases") or []),
                    fixed_versions=sorted(set(fixes), key=lambda v: _version(v) or Version("0")),
                )
        return list(found.values())


def _flatten(docs: Iterable[Any]) -> Iterable[dict[str, Any]]:
    for doc in docs:
        if isinstance(doc, list):
            yield from (d for d in doc if isinstance(d, dict))
        elif isinstance(doc, dict) and "vulns" in doc and "id" not in doc:
            yield from doc["vulns"]  # the osv.dev query API's response shape
        elif isinstance(doc, dict):
            yield doc
