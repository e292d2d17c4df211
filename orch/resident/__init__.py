"""A resident client session: ``orch`` commands that start with their imports already done.

A short command (``orch rpc … --nodes FILE``) spends most of its time starting Python and
importing click, kombu, the security provider and orch itself, every time. A session is one
process per user and installation with those modules imported (the first command that finds
none starts it, unless ``ORCH_SESSION`` says ``on`` or ``off``); each later
``orch`` command in the same environment hands its arguments, environment, working directory
and standard streams to it over a private unix socket, and the session forks a child that
runs the command exactly as a new process would (settings, plugins, credentials and the
broker connection are all made anew in the child). Like ssh's ``ControlMaster`` as Ansible
sets it up, it starts by itself and is per user.

- :mod:`orch.resident.wire` — where the socket lives, the frames, and the facts a command
  and the session must share (interpreter, ``sys.path``, namespaces, user);
- :mod:`orch.resident.client` — the thin side every ``orch`` command runs first; it imports
  almost nothing and falls back to running the command itself whenever the session is
  absent or declines;
- :mod:`orch.resident.session` — the session process: accept, check, fork, relay signals,
  report the exit status, stop when idle or when its code changed on disk;
- :mod:`orch.resident.control` — ``start``/``stop``/``status`` for the CLI.
"""
