"""SVG snapshots of the main views, rendered by the same scenes as the README's
screenshots (xsctl/ui/screenshots.py): the demo pool with its clock fixed, metrics
still, everything driven through Pilot.

The address's port and the certificate fingerprints change with every run, so they
are normalised before comparing. To accept a change on purpose:

    XSCTL_UPDATE_SNAPSHOTS=1 python -m pytest tests/ui/test_snapshots.py
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from xsctl.ui.screenshots import SCENES, render

HERE = Path(__file__).parent / "snapshots"
SNAPSHOT_SCENES = [s for s in SCENES if s != "tasks"]  # tasks show live progress and times


def normalise(svg: str) -> str:
    svg = re.sub(r"terminal-\d+-", "terminal-ID-", svg)
    svg = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", svg)
    svg = re.sub(r"SHA256:[0-9A-F]{2}(?::[0-9A-F]{2})*(?::[0-9A-F])?…?", "SHA256:FP", svg)
    # its rest, folded onto the next line at 80 columns
    svg = re.sub(r"(?<![0-9A-F:])(?:[0-9A-F]{2}:){7,}[0-9A-F]{2}(?![0-9A-F:])", "FP", svg)
    return svg


@pytest.mark.parametrize("scene", SNAPSHOT_SCENES)
async def test_snapshot(scene: str, tmp_path: Path) -> None:
    svg = normalise(await render(scene, tmp_path / "known_hosts"))
    expected_file = HERE / f"{scene}.svg"
    if os.environ.get("XSCTL_UPDATE_SNAPSHOTS") or not expected_file.exists():
        if not os.environ.get("XSCTL_UPDATE_SNAPSHOTS"):
            pytest.fail(f"no snapshot for {scene}: run with XSCTL_UPDATE_SNAPSHOTS=1")
        HERE.mkdir(exist_ok=True)
        expected_file.write_text(svg, encoding="utf-8")
    expected = expected_file.read_text(encoding="utf-8")
    if svg != expected:
        actual = tmp_path / f"{scene}.actual.svg"
        actual.write_text(svg, encoding="utf-8")
        pytest.fail(f"{scene} differs from {expected_file}; see {actual} "
                    "(XSCTL_UPDATE_SNAPSHOTS=1 accepts it)")
    assert "Demo&#160;pool" in svg  # the pool name is on screen (SVG spaces are &#160;)
