"""How to add one of muxtop's optional extras (metrics, web, bench) to this install: the
pip command that works for the way muxtop was installed.

muxtop is not on an index: `pip install 'muxtop[metrics]'` asks one for a package it does
not have. Installed from a clone, pip keeps where it came from (PEP 610's direct_url.json),
so the hint can name the clone; only an install from an index gets the index form.
"""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path
from urllib.parse import unquote, urlparse

from muxtop.printable import printable

_ROOT = Path(__file__).resolve().parents[1]  # the folder that holds this muxtop package


def _origin() -> dict:
    """PEP 610's record of where this install came from; {} from an index, or unknown. The
    metadata is looked for beside this very package (another muxtop, say a clone's
    egg-info in the current folder, may come first on sys.path)."""
    try:
        found = metadata.distributions(name="muxtop", path=[str(_ROOT)])
        text = next(iter(found)).read_text("direct_url.json")
        origin = json.loads(text) if text else {}
    except (StopIteration, ValueError, OSError):
        return {}
    return origin if isinstance(origin, dict) else {}


def install_hint(extra: str) -> str:
    """The command that adds `extra`: "pip install '.[metrics]' in muxtop's clone (FOLDER)"
    for an install from a clone, the index's form otherwise."""
    origin = _origin()
    url = origin.get("url")
    vcs = origin.get("vcs_info")
    if isinstance(url, str) and url.startswith("file://") and "dir_info" in origin:
        clone = printable(unquote(urlparse(url).path))  # a folder's name may be anything
        return f"pip install '.[{extra}]' in muxtop's clone ({clone})"
    if not origin and (_ROOT / "pyproject.toml").is_file():  # run from the clone itself
        return f"pip install '.[{extra}]' in muxtop's clone ({printable(str(_ROOT))})"
    if isinstance(url, str) and isinstance(vcs, dict) and isinstance(vcs.get("vcs"), str):
        return printable(f"pip install 'muxtop[{extra}] @ {vcs['vcs']}+{url}'")
    return f"pip install 'muxtop[{extra}]'"
