"""Typestores for reading and writing bags without a ROS installation (rosbags).

Message types come from, in order of precedence: the bag's own embedded definitions (MCAP,
ROS 1 and rosbag2 v9 sqlite3 bags carry them), ``.msg`` files given by the user, this package's
``msg/`` folder (always registered), and the built-in typestore of a ROS distribution.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Iterable
from pathlib import Path

logger = logging.getLogger(__name__)

PACKAGE_NAME = "ate_ros"
DEFAULT_DISTRO = "kilted"
ROS1_DISTRO = "noetic"


class TypestoreError(ValueError):
    """A distribution name or ``.msg`` definition cannot be used."""


def available_distros() -> list[str]:
    """Distribution names accepted by :func:`make_typestore` (e.g. ``humble``, ``noetic``)."""
    from rosbags.typesys import Stores

    return sorted(s.value.split("_", 1)[1] for s in Stores if "_" in s.value) + ["latest"]


def _store_enum(distro: str):
    from rosbags.typesys import Stores

    d = distro.lower().strip()
    if d == "latest":
        return Stores.LATEST
    for s in Stores:
        if s.value == d or s.value.endswith("_" + d):
            return s
    raise TypestoreError(
        f"unknown ROS distribution {distro!r}; choose one of {available_distros()}")


def project_msg_dir() -> Path:
    """This package's ``msg/`` folder (source checkout or installed share directory)."""
    here = Path(__file__).resolve()
    candidates = [here.parents[3] / "msg", Path(sys.prefix) / "share" / PACKAGE_NAME / "msg"]
    if len(here.parents) > 6:  # <prefix>/lib/pythonX.Y/site-packages/ate_ros/core/data/
        candidates.append(here.parents[6] / "share" / PACKAGE_NAME / "msg")
    for c in candidates:
        if c.is_dir() and any(c.glob("*.msg")):
            return c
    raise TypestoreError(f"cannot find the {PACKAGE_NAME} msg/ folder (looked next to {here})")


def types_from_msg_dir(spec: str | Path, package: str | None = None) -> dict:
    """Parse every ``.msg`` file under a folder into a rosbags types dict.

    Args:
        spec: A folder, or ``"PKG=FOLDER"`` to name the package explicitly. Without a name, each
            file's package is the folder holding its ``msg/`` folder (``PKG/msg/Foo.msg``).
        package: Package name to use for every file (overrides the layout).

    Returns:
        ``{"pkg/msg/Name": parsetree}`` ready for ``Typestore.register``.

    Raises:
        TypestoreError: Missing folder, no ``.msg`` files, unknown package or a parse error.
    """
    from rosbags.typesys import get_types_from_msg

    text = str(spec)
    if package is None and "=" in text and not Path(text).exists():
        package, text = text.split("=", 1)
    folder = Path(text)
    if not folder.is_dir():
        raise TypestoreError(f"--msg-dir {folder}: not a folder")
    files = sorted(folder.rglob("*.msg"))
    if not files:
        raise TypestoreError(f"--msg-dir {folder}: no .msg files found")
    types: dict = {}
    for f in files:
        pkg = package
        if pkg is None:
            if f.parent.name != "msg":
                raise TypestoreError(
                    f"{f}: cannot tell its package (expected PKG/msg/{f.name}); pass "
                    f"--msg-dir PKG={folder}")
            pkg = f.parent.parent.name
        try:
            types.update(get_types_from_msg(f.read_text(), f"{pkg}/msg/{f.stem}"))
        except Exception as exc:  # rosbags raises several parser error types
            raise TypestoreError(f"{f}: cannot parse message definition ({exc})") from exc
    return types


@functools.lru_cache(maxsize=1)
def project_types() -> dict:
    """This package's own message types (``ate_ros/msg/ActionChunk``, ...)."""
    return types_from_msg_dir(project_msg_dir(), package=PACKAGE_NAME)


def register_missing(store, types: dict) -> list[str]:
    """Register the types ``store`` lacks; keep existing ones (a bag's own come first).

    Returns the names that were skipped because the store already had a different definition.
    """
    from rosbags.typesys import TypesysError

    new = {k: v for k, v in types.items() if k not in store.fielddefs}
    if new:
        store.register(new)
    clashes = []
    for k, v in types.items():
        if k in new:
            continue
        try:
            store.register({k: v})
        except TypesysError:
            clashes.append(k)
    return clashes


def make_typestore(distro: str = DEFAULT_DISTRO, msg_dirs: Iterable[str | Path] = ()):
    """A rosbags ``Typestore`` for ``distro`` plus this package's and the user's ``.msg`` types.

    Args:
        distro: ROS distribution (``kilted``, ``humble``, ``noetic``, ...). ``noetic`` gives ROS 1
            layouts (``Header.seq``), needed to write ROS 1 bags.
        msg_dirs: Extra folders of ``.msg`` files (see :func:`types_from_msg_dir`).

    Raises:
        TypestoreError: Unknown distribution or unreadable ``.msg`` files.
    """
    from rosbags.typesys import get_typestore

    store = get_typestore(_store_enum(distro))
    extra = dict(project_types())
    for d in msg_dirs:
        extra.update(types_from_msg_dir(d))
    clashes = register_missing(store, extra)
    if clashes:
        logger.warning("types %s already defined by the %s typestore; keeping the built-in",
                       clashes, distro)
    return store


def is_ros1_distro(distro: str) -> bool:
    """True for ROS 1 distributions (whose ``Header`` carries ``seq``)."""
    return _store_enum(distro).value.startswith("ros1")
