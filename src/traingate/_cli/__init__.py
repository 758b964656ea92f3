"""The command line: parse, call one method of ``Traingate``, format. Nothing else lives here.

One module a family of commands; importing them registers them on the ``cli`` group.
Exit status: 0 success; 1 the operation ran but found a problem (rejected events, a failed
verification); 2 the command could not run (bad option, unusable settings, unknown item).
"""

from traingate._cli import audit, datasets, events, policy, privacy, server, vault
from traingate._cli.root import cli, main

__all__ = ["cli", "main"]

_COMMAND_MODULES = (audit, datasets, events, policy, privacy, server, vault)
