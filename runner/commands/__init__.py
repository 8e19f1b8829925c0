"""The sub-commands: each has ``configure(parser)`` and ``execute(args) -> int``."""
