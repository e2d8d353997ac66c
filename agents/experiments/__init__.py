"""The experiment layer: ``commands/`` (one module per subcommand) over the engine (config and
validation, run dirs, training, evaluation, comparison, report, record, the sweep).

It imports the RL algorithm (``agents`` top level: ppo, policies, buffer, cores, extractors),
never the other way round; the commands import the engine, never the reverse. ``train_agent.py``
builds the parser from the commands and dispatches (docs/architecture.md).
"""
