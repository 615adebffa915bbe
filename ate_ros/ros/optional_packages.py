"""Launch arguments that start a node from another package which may not be installed.

``robot_state_publisher:=auto`` (sim.launch.py's default) starts the node where the package is
in the ament index and otherwise says, in one line, that it is skipped and which argument turns
the message off; ``true`` with the package missing stops the launch with a message that names
both the package and the argument, instead of launch's "package not found" that names neither.
"""

from __future__ import annotations

TRUE_WORDS = ("true", "1", "yes", "on")
FALSE_WORDS = ("false", "0", "no", "off")
AUTO = "auto"


class MissingPackageError(RuntimeError):
    """An optional package was asked for (``argument:=true``) and is not installed."""


def package_installed(package: str) -> bool:
    """Whether ``package`` is in the ament index (the lookup ``ros2 launch`` itself makes; no
    ament environment, i.e. no ``AMENT_PREFIX_PATH``, means no package is found)."""
    from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

    try:
        get_package_share_directory(package)
    except (PackageNotFoundError, OSError):
        return False
    return True


def optional_package(argument: str, value: str, package: str, installed: bool,
                     install_hint: str = "") -> tuple[bool, str]:
    """Decide whether the node of ``package`` starts for ``argument:=value``.

    Args:
        argument: The launch argument's name (named in every message).
        value: Its value: true/false words or ``auto``.
        package: The package the node comes from.
        installed: Whether ``package`` is installed (:func:`package_installed`).
        install_hint: How to install it, for the messages.

    Returns:
        ``(start, message)``: ``message`` is empty unless ``auto`` skipped the node.

    Raises:
        MissingPackageError: ``value`` is true and ``package`` is not installed.
        ValueError: ``value`` is neither a true/false word nor ``auto``.
    """
    word = value.strip().lower()
    if word in FALSE_WORDS:
        return False, ""
    if word not in TRUE_WORDS and word != AUTO:
        raise ValueError(f"{argument}:={value!r}: expected true, false or {AUTO}")
    hint = f" ({install_hint})" if install_hint else ""
    if installed:
        return True, ""
    if word == AUTO:
        return False, (f"{package} is not installed{hint}: not started; launch with "
                       f"{argument}:=false to skip it without this message")
    raise MissingPackageError(f"{argument}:=true but {package} is not installed{hint}; install "
                              f"it or launch with {argument}:=false")
