"""Evaluation on shifted environments, one concern per module.

- :mod:`.ladder`: the settings an evaluation walks (the shift ladder), unshifted first;
- :mod:`.episodes`: paired episodes (episode ``i`` of every setting and model has reset seed ``seed + i``);
- :mod:`.metrics`: per-setting statistics (return CI, success rate with its Wilson CI, normalized score);
- :mod:`.results`: the :class:`~.results.Result` row and the ``results.csv`` / ``results.json`` files;
- :mod:`.tables`: numbers and tables for the terminal;
- :mod:`.evaluate`: a model over a ladder (``evaluate_model``) and a run dir's evaluation (``evaluate_run``).

This file imports nothing, so that reading a results file (the sweep's driver) does not import torch.
"""
