"""Where the shipped mapping files and JSON Schemas are.

An installed wheel carries them as package data (`engine/_mappings`, `engine/_schemas`, mapped from the
repository's top-level `mappings/` and `schemas/` by pyproject.toml); a source checkout or an editable
install reads the top-level folders themselves.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent.parent  # engine/ is a namespace package: importlib.resources needs
SOURCE_TREE = _PACKAGE.parent  # a single folder, so the data is found beside engine/'s own files


def data_dir(name: str) -> Path:
    """The folder `name` (`mappings`, `schemas`): the installed package data, else the source tree's."""
    packaged = _PACKAGE / f"_{name}"
    if packaged.is_dir():
        return packaged
    source = SOURCE_TREE / name
    if source.is_dir() and (SOURCE_TREE / "pyproject.toml").is_file():
        return source
    raise FileNotFoundError(f"no {name}/ folder: no package data ({packaged}), no source tree ({source})")


MAPPINGS = data_dir("mappings")
SCHEMAS = data_dir("schemas")
