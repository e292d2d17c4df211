"""What a service name may be: the DDL's pattern, checked again where a name meets a command.

The DDL refuses anything else before the agent runs; the providers check again because
they are a library too (tests, other callers), and a name that reached ``argv`` unchecked
could be read as an option (``--global``) or a path (``../x``).
"""

from __future__ import annotations

import re

#: systemd unit names and SysV script names: letters, digits and ``@ . _ : + -``, starting
#: with a letter or digit, at most 255 characters. No ``/``, no leading ``-``, no spaces.
PATTERN = r"^[A-Za-z0-9][A-Za-z0-9@._:+\-]{0,254}$"
NAME_HELP = ("letters, digits and @ . _ : + -, starting with a letter or digit, at most "
             "255 characters")
_NAME = re.compile(PATTERN)


def valid_name(name: str) -> bool:
    return bool(_NAME.fullmatch(name))
