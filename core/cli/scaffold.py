"""`zoo new-plugin NAME`: write an installable plugin package laid out on the skeleton.

The templates (``templates/new_plugin``) hold a placeholder model that exports and
runs end to end; every file is one role of ``skeleton.py``. The package is
written into a temporary directory beside the destination and renamed into
place, so a failure leaves nothing behind, and an existing directory is never
touched.
"""

from __future__ import annotations

import keyword
import re
from pathlib import Path
from string import Template

from ..util.files import is_free_directory, new_directory

TEMPLATES = Path(__file__).parent / "templates" / "new_plugin"
NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


class ScaffoldError(ValueError):
    """A bad name or destination (a usage error: nothing was written)."""


def names(name: str) -> dict[str, str]:
    if not NAME.match(name) or keyword.iskeyword(name) or name.endswith("_"):
        raise ScaffoldError(
            f"plugin name {name!r} must be lowercase letters, digits and underscores, starting with a letter (e.g. "
            "my_tts)"
        )
    return {
        "name": name,
        "package": f"zoo_{name}",
        "dist": f"zoo-{name.replace('_', '-')}",
        "cls": "".join(part.capitalize() for part in name.split("_")) + "Plugin",
    }


def destination(name: str, directory: Path | None) -> Path:
    return Path(directory) if directory is not None else Path(names(name)["dist"])


def new_plugin(name: str, directory: Path | None = None) -> tuple[Path, list[Path]]:
    """Write the package; returns (its directory, the files written, relative to it)."""
    values = names(name)
    dest = destination(name, directory)
    if not is_free_directory(dest):
        raise ScaffoldError(f"{dest} already exists and is not an empty directory; choose another --dir")
    written: list[Path] = []
    with new_directory(dest) as tmp:
        for template in sorted(TEMPLATES.rglob("*.tmpl")):
            rel = template.relative_to(TEMPLATES).with_suffix("")  # drop .tmpl
            rel = Path(*(part.replace("PACKAGE", values["package"]) for part in rel.parts))
            target = tmp / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(Template(template.read_text(encoding="utf-8")).substitute(values), encoding="utf-8")
            written.append(rel)
    return dest, written
