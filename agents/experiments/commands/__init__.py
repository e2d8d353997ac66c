"""The subcommands of ``rims-rl``, one module each: its flags (``register``), its printing and what it
runs (``run``). ``train_agent.py`` builds the parser from them and maps errors to exit codes.

Building the parser must stay cheap (``--help`` and a usage error answer at once), so each module
imports at its top only what its flags need, and the engine it drives inside ``run``.
"""
