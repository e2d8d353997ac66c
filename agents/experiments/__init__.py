"""The experiment layer: config and presets, run dirs, training, evaluation, comparison, record.

It imports the RL algorithm (``agents`` top level: ppo, policies, buffer, cores, extractors),
never the other way round. ``train_agent.py`` parses arguments and calls into this package.
"""
