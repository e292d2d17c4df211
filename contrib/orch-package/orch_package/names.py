"""What package names and versions may be: the DDL's patterns, checked again where a name
meets a command line (a name must never be read as an option or a path)."""

from __future__ import annotations

import re

#: Debian and RPM package names, optionally with a Debian architecture (``libc6:amd64``).
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9+._\-]{0,199}(:[a-z0-9\-]{1,30})?$"
NAME_HELP = ("letters, digits and + . _ -, starting with a letter or digit, optionally "
             ":ARCH")
#: Debian and RPM versions (epoch, upstream, revision).
VERSION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9.+~:_\-]{0,127}$"
VERSION_HELP = "a version such as 1.2.3-1 or 2:1.0~rc1-3, or 'latest'"
_NAME = re.compile(NAME_PATTERN)
_VERSION = re.compile(VERSION_PATTERN)


def valid_name(name: str) -> bool:
    return bool(_NAME.fullmatch(name))


def valid_version(version: str) -> bool:
    return bool(_VERSION.fullmatch(version))
