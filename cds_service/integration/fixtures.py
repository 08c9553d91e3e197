"""Fixture files: the manifest, the requests, and the FHIR bundles and README generated from them.

``fixtures/requests/<case>.json`` (a full CDS Hooks request) and ``fixtures/manifest.yaml`` are written by
hand. This module derives the rest so it can never drift:

- ``fixtures/bundles/<case>.json``: a FHIR transaction Bundle with one PUT per resource of the request's
  prefetch, to load the same patient into a real FHIR server (ids kept, so searches find the same data);
- ``fixtures/README.md``: the table of cases (file, situation, expected cards).

    python -m cds_service.integration.fixtures            # regenerate
    python -m cds_service.integration.fixtures --check    # exit 1 if a generated file is stale
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from cds_service.config import PACKAGE_DIR
from cds_service.record import bundle_resources

DEFAULT_FIXTURES_DIR = PACKAGE_DIR.parent / "fixtures"


class FixtureError(ValueError):
    """A fixture file is missing or inconsistent; the message names the file."""


@dataclass(frozen=True)
class Case:
    id: str
    situation: str
    hook: str
    expected: tuple[str, ...]  # topic codes of the expected cards, in any order


def fixtures_dir(env: Mapping[str, str] | None = None) -> Path:
    """``CDS_FIXTURES_DIR`` or the ``fixtures/`` folder of the source checkout."""
    raw = (env if env is not None else os.environ).get("CDS_FIXTURES_DIR", "").strip()
    return Path(raw) if raw else DEFAULT_FIXTURES_DIR


def load_manifest(root: Path) -> list[Case]:
    path = root / "manifest.yaml"
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise FixtureError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    except yaml.YAMLError as exc:
        raise FixtureError(f"{path}: not valid YAML") from exc
    entries = raw.get("fixtures", raw.get("cases")) if isinstance(raw, dict) else raw
    if not isinstance(entries, list):
        raise FixtureError(f"{path}: expected a list of cases")
    cases = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), str):
            raise FixtureError(f"{path}: case {index} needs an id")
        expected = entry.get("expected") or []
        if not isinstance(expected, list) or not all(isinstance(code, str) for code in expected):
            raise FixtureError(f"{path}: case {entry['id']}: expected must be a list of topic codes")
        cases.append(
            Case(
                id=entry["id"],
                situation=str(entry.get("situation", "")).strip(),
                hook=str(entry.get("hook", "")),
                expected=tuple(expected),
            )
        )
    return cases


def request_path(root: Path, case_id: str) -> Path:
    return root / "requests" / f"{case_id}.json"


def bundle_path(root: Path, case_id: str) -> Path:
    return root / "bundles" / f"{case_id}.json"


def load_request(root: Path, case_id: str) -> dict[str, Any]:
    path = request_path(root, case_id)
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise FixtureError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    except json.JSONDecodeError as exc:
        raise FixtureError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno})") from exc
    if not isinstance(body, dict):
        raise FixtureError(f"{path}: not a JSON object")
    return body


def _prefetch_resources(request: Mapping[str, Any], origin: Path) -> Iterator[Mapping[str, Any]]:
    prefetch = request.get("prefetch") or {}
    if not isinstance(prefetch, Mapping):
        raise FixtureError(f"{origin}: prefetch is not an object")
    for key in sorted(prefetch):
        for resource in bundle_resources(prefetch[key]):
            if resource.get("resourceType") == "OperationOutcome":
                continue  # the EHR's note that a key failed; nothing to store
            if not isinstance(resource.get("id"), str) or not resource["id"]:
                raise FixtureError(f"{origin}: a {resource.get('resourceType')} in prefetch.{key} has no id")
            yield resource


def transaction_bundle(request: Mapping[str, Any], origin: Path) -> dict[str, Any]:
    """A transaction Bundle that PUTs every resource of the request's prefetch, ids kept."""
    resources: dict[str, Mapping[str, Any]] = {}
    for resource in _prefetch_resources(request, origin):
        ref = f"{resource['resourceType']}/{resource['id']}"
        if ref in resources and resources[ref] != resource:
            raise FixtureError(f"{origin}: {ref} appears twice in prefetch with different content")
        resources[ref] = resource
    # Patient first so references resolve in servers that check them; then a stable order.
    order = sorted(resources, key=lambda ref: (not ref.startswith("Patient/"), ref))
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"fullUrl": ref, "resource": resources[ref], "request": {"method": "PUT", "url": ref}}
            for ref in order
        ],
    }


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def readme(cases: Sequence[Case]) -> str:
    lines = [
        "# Fixtures",
        "",
        "One CDS Hooks request and one FHIR patient bundle per clinical situation. The requests and",
        "`manifest.yaml` are written by hand; the bundles and this table are generated from them:",
        "",
        "    python -m cds_service.integration.fixtures",
        "",
        "A test fails when a generated file is stale, and another when a fixture no longer gives its",
        "expected cards (offline, and through a real FHIR server with and without prefetch).",
        "",
        "Try one: `cds-service evaluate fixtures/requests/<case>.json --explain`.",
        "",
        "| request | bundle | hook | situation | expected cards (topic codes) |",
        "|---|---|---|---|---|",
    ]
    for case in cases:
        expected = ", ".join(f"`{code}`" for code in case.expected) or "none"
        lines.append(
            f"| [{case.id}](requests/{case.id}.json) | [bundle](bundles/{case.id}.json) "
            f"| {_cell(case.hook)} | {_cell(case.situation)} | {expected} |"
        )
    return "\n".join(lines) + "\n"


def _dump(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False) + "\n"


def generated_files(root: Path) -> dict[Path, str]:
    """Every generated file under ``root`` with the text it should have."""
    cases = load_manifest(root)
    bundles = {}
    for case in cases:
        bundles[case.id] = transaction_bundle(load_request(root, case.id), request_path(root, case.id))
    files = {bundle_path(root, case_id): _dump(bundle) for case_id, bundle in bundles.items()}
    files[root / "README.md"] = readme(cases)
    return files


def stale_files(root: Path) -> list[Path]:
    """Generated files that are missing or differ, plus bundles no case produces any more."""
    files = generated_files(root)
    stale = [path for path, text in files.items() if not path.is_file() or path.read_text("utf-8") != text]
    stale.extend(sorted(p for p in (root / "bundles").glob("*.json") if p not in files))
    return stale


def write(root: Path) -> list[Path]:
    files = generated_files(root)
    (root / "bundles").mkdir(parents=True, exist_ok=True)
    for orphan in (root / "bundles").glob("*.json"):
        if orphan not in files:
            orphan.unlink()
    for path, text in files.items():
        path.write_text(text, encoding="utf-8")
    return sorted(files)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cds_service.integration.fixtures", description=__doc__)
    parser.add_argument("--dir", type=Path, default=None, help="fixtures folder (default: ./fixtures)")
    parser.add_argument("--check", action="store_true", help="only report stale files; exit 1 if any")
    args = parser.parse_args(argv)
    root = args.dir or fixtures_dir()
    try:
        if args.check:
            stale = stale_files(root)
            for path in stale:
                print(f"stale: {path}")
            return 1 if stale else 0
        for path in write(root):
            print(f"wrote {path}")
    except FixtureError as exc:
        print(f"fixtures: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
