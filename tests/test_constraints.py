"""The environment the suite runs in is exactly the one constraints/ pins (.ci/env builds it
and leaves a marker saying from which file): a dependency added to pyproject without
`make lock`, or a pin pip could not honour, fails here instead of drifting silently."""

from __future__ import annotations

import re
import sys
import sysconfig
from importlib import metadata
from pathlib import Path

from conftest import missing

ROOT = Path(__file__).resolve().parents[1]
MARKER = Path(sys.prefix) / "search-envs-constraints"
NOT_PINNED = {"search-envs", "pip", "setuptools", "wheel"}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"{path.name}: {line!r} is not an exact pin"
            out[canonical(name)] = version
    return out


def test_every_pin_file_is_exact_and_fixes_torch():
    for name in ("main", "verl"):
        pinned = pins(ROOT / "constraints" / f"{name}.txt")
        assert pinned["torch"] == "2.13.0"  # no local label: a CUDA build of 2.13.0 satisfies it
        assert "search-envs" not in pinned
    assert "verl" in pins(ROOT / "constraints" / "verl.txt")
    assert "verl" not in pins(ROOT / "constraints" / "main.txt")


def test_installed_packages_are_the_pinned_ones():
    if not MARKER.exists():  # CI builds its environments with .ci/env: there, this fails
        missing(f"this environment ({sys.prefix}) was not built by .ci/env, so nothing pins it")
    pinned = pins(ROOT / "constraints" / f"{MARKER.read_text().strip()}.txt")
    # what pip installed into this environment's site-packages, not metadata that sys.path shows
    # from elsewhere: the checkout's search_envs.egg-info, or the colorama that ray vendors in
    # ray/thirdparty_files and puts on sys.path once imported (the verl tests import it)
    site_packages = {Path(sysconfig.get_paths()[key]).resolve() for key in ("purelib", "platlib")}
    dists = [d for d in metadata.distributions() if Path(str(d.locate_file(""))).resolve() in site_packages]
    installed = {canonical(d.metadata["Name"]): d.version for d in dists}
    where = {canonical(d.metadata["Name"]): str(d.locate_file("")) for d in dists}
    unpinned = sorted(set(installed) - set(pinned) - NOT_PINNED)
    assert not unpinned, f"installed but not pinned (run `make lock`): {[(n, where[n]) for n in unpinned]}"
    wrong = {n: (installed[n], v) for n, v in pinned.items() if n in installed and installed[n].split("+")[0] != v}
    assert not wrong, f"installed != pinned: {wrong}"
    absent = sorted(set(pinned) - set(installed))
    assert not absent, f"pinned but not installed (stale pins: run `make lock`): {absent}"
