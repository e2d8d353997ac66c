"""The sweep: a grid of runs trained side by side on Ray, one task per (env, core, seed).

- :mod:`.grid`: grid files, the jobs of a grid and the plan (every run's config and state), without Ray;
- :mod:`.runner`: the driver: :class:`~.runner.RunnerSession` submits runs as Ray tasks and collects them
  (``sweep``, ``demo`` and ``tune`` use it); :func:`~.driver.sweep` plans, runs and compares per env;
- :mod:`.task`: the Ray task that trains (and evaluates) one run;
- :mod:`.cluster`: starting or joining Ray, and what its nodes can hold;
- :mod:`.progress`: each run's ``progress.json``, written by its task, read by the driver;
- :mod:`.live`: the terminal display, a live status line and the final table.

Each task trains one ordinary run dir ``<logdir>/<env>/<label>/seed<N>/`` through
:func:`agents.experiments.train.train_run` (so ``evaluate``, ``compare``, ``record`` and
TensorBoard work on it unchanged), its output going to ``<run>/train.log``; with ``evaluate`` it
then evaluates the run in the same task, and the sweep ends with a comparison per env.

- Validation first: the grid, every run's config and every existing run dir are checked before Ray
  starts, so a bad grid costs one line and no start-up. The driver imports neither torch nor SB3.
- Resumable: finished runs (``model.zip``) are skipped, interrupted ones resume from
  ``checkpoints/last.zip``; a run dir holding another config is refused (one line).
- Faults: a task that raises (a bug, an OS error) or whose worker or node dies is retried by Ray
  (``retries`` times) and resumes from its checkpoint; a user error (a corrupt model, a run dir locked
  by another process) fails the run at once. One failed run never stops the others.
- The live line reads the runs' progress files: no Ray actor, so no node's death takes the display or
  the sweep down. Ctrl-C and SIGTERM checkpoint the running runs (exit 130, 143).
- Ray runs locally by default (``workers`` CPUs, one torch thread and one CPU per run), or joins a
  cluster at ``address``; run dirs must then lie on a file system every node sees at the same path.
"""
