"""Which image licences allow shipping a thumbnail (every licence string in the shared labels.csv included)."""

from __future__ import annotations

import csv

import pytest

from cxrviewer.services.case_library import LICENCE_RULE, licence_allows_redistribution, licence_rule

ALLOWED = [
    "CC BY 4.0",
    "CC BY 3.0",
    "CC BY",
    "CC BY-SA",
    "CC BY-SA 4.0",
    "cc-by-sa-3.0",
    "Creative Commons Attribution 4.0 International",
    "CC0",
    "CC0 1.0 Universal",
    "Public Domain",
    "Apache-2.0",
    "Apache License, Version 2.0",
    "MIT",
]
REFUSED = [
    "CC BY-NC-SA 4.0",
    "CC BY-NC-SA",
    "CC BY-NC-ND",
    "CC BY-NC-ND 4.0",
    "CC BY-NC 4.0",
    "CC BY-ND",
    "",
    "unknown",
    "listed as authorized for everyone",
    "image: unstated (per ieee8023 metadata); masks CC BY 4.0",
    "unstated per image (ieee8023 README: per-image licence in metadata.csv; metadata CC BY-NC-SA 4.0)",
    "unspecified in repo; upstream Kaggle COVID-19 Radiography Database terms",
    "CC BY 4.0 (research only)",
    "GPL-3.0",
]


@pytest.mark.parametrize("licence", ALLOWED)
def test_redistributable_licences(licence):
    assert licence_allows_redistribution(licence)


@pytest.mark.parametrize("licence", REFUSED)
def test_refused_licences(licence):
    assert not licence_allows_redistribution(licence)


def test_hand_checked_extras_but_never_nc_or_nd():
    extra = ["Listed as authorized for everyone."]
    assert licence_allows_redistribution("listed as authorized for everyone", extra)
    assert not licence_allows_redistribution("CC BY-NC-SA 4.0", ["CC BY-NC-SA 4.0"])
    assert "also allowed by hand: Listed as authorized for everyone." in licence_rule(extra)
    assert licence_rule() == LICENCE_RULE


def test_shared_labels_licences(shared_data):
    """The bundle's own strings: CC BY / CC BY-SA pass; NC, ND, unstated and unspecified do not."""
    with open(shared_data / "cxr" / "labels.csv", newline="", encoding="utf-8") as fh:
        licences = {row["license"] for row in csv.DictReader(fh)}
    allowed = {lic for lic in licences if licence_allows_redistribution(lic)}
    assert allowed == {"CC BY 4.0", "CC BY 3.0", "CC BY", "CC BY-SA"} & licences
    assert allowed
