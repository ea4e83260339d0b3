"""OSV matching: version ranges (introduced / fixed / last_affected), version lists, names."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
from packaging.version import Version

from titans.errors import InputError
from titans.security.osv import OsvDatabase, cvss3_base_score, range_affects, record_severity

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "security"
OSV = FIXTURES / "osv-demo.json"


@pytest.fixture(scope="module")
def db() -> OsvDatabase:
    return OsvDatabase.load(OSV)


@pytest.mark.parametrize(
    ("version", "affected"),
    [
        ("2.2.1", False),
        ("2.3.0", True),
        ("2.19.0", True),
        ("2.30.9", True),
        ("2.31.0", False),
        ("2.32.3", False),
    ],
)
def test_introduced_fixed_range(db: OsvDatabase, version: str, affected: bool) -> None:
    ids = [v.id for v in db.match("requests", version)]
    assert ids == (["GHSA-j8r2-6x86-q33q"] if affected else [])


@pytest.mark.parametrize(
    ("version", "affected"),
    [
        ("0.1", True),
        ("1.4.1", True),
        ("1.4.2", False),
        ("1.9", False),
        ("2.0.0", True),
        ("2.1.0", True),
        ("2.1.1", False),
        ("3.0", False),
    ],
)
def test_two_ranges_and_last_affected_with_name_normalisation(
    db: OsvDatabase, version: str, affected: bool
) -> None:
    # the record says "Demo_Lib"; pins say demo-lib / DEMO.LIB; GIT ranges never match
    for name in ("demo-lib", "DEMO.LIB"):
        assert bool(db.match(name, version)) is affected


def test_versions_list_without_ranges(db: OsvDatabase) -> None:
    assert [v.id for v in db.match("listed-only", "0.9.1")] == ["TITANS-TEST-0002"]
    assert db.match("listed-only", "0.9.2") == []


def test_other_ecosystems_and_withdrawn_records_never_match(db: OsvDatabase) -> None:
    ids = {v.id for v in db.match("demo-lib", "5.0")}
    assert "TITANS-TEST-0003" not in ids and "TITANS-TEST-0004" not in ids
    assert ids == set()


def test_severity_fixes_and_aliases(db: OsvDatabase) -> None:
    (requests_vuln,) = db.match("requests", "2.19.0")
    assert requests_vuln.severity == "medium"  # GitHub's MODERATE
    assert requests_vuln.fixed_versions == ["2.31.0"]
    assert requests_vuln.aliases == ["CVE-2023-32681"]
    (demo,) = db.match("demo-lib", "1.0")
    assert demo.severity == "critical"  # CVSS 9.8 from the vector
    (listed,) = db.match("listed-only", "0.9.3")
    assert listed.severity == "unknown"


def test_unordered_events_are_sorted_and_bad_versions_ignored() -> None:
    events = [{"fixed": "3.0"}, {"introduced": "not a version"}, {"introduced": "2.0"}]
    assert range_affects(events, Version("2.5"))
    assert not range_affects(events, Version("1.5"))
    assert not range_affects(events, Version("3.0"))


def test_cvss_scores_follow_the_specification() -> None:
    assert cvss3_base_score("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H") == 9.8
    assert cvss3_base_score("CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N") == 6.1
    assert cvss3_base_score("CVSS:3.0/AV:L/AC:L/PR:L/UI:N/S:U/C:N/I:N/A:N") == 0.0
    assert cvss3_base_score("CVSS:2.0/AV:N") is None
    record = {
        "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N"}]
    }
    assert record_severity(record) == "medium"


def test_directory_and_zip_exports(tmp_path: Path) -> None:
    records = json.loads(OSV.read_text())
    folder = tmp_path / "osv"
    folder.mkdir()
    archive = tmp_path / "all.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for r in records:
            (folder / f"{r['id']}.json").write_text(json.dumps(r))
            z.writestr(f"{r['id']}.json", json.dumps(r))
    for source in (folder, archive):
        loaded = OsvDatabase.load(source)
        assert loaded.record_count == len(records)
        assert [v.id for v in loaded.match("requests", "2.19.0")] == ["GHSA-j8r2-6x86-q33q"]


def test_missing_or_broken_export_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        OsvDatabase.load(tmp_path / "nope.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(InputError, match="could not be read"):
        OsvDatabase.load(broken)
