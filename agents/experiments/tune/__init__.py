"""Equal-budget tuning (``rims-rl tune``): one Optuna study per (env, label), each trial a config trained on
S tuning seeds as sweep runs, scored on the training distribution.

The protocol (Henderson et al. 2018; Patterson et al. 2024): every label gets the same search space and the
same number of trials of ``S`` seeds x ``T`` steps; tuning seeds (1000 + i) never overlap the seeds 0-999
that studies report; a trial's score is measured on the unshifted setting only, never on the test shifts.

- :mod:`.space`: the search space file;
- :mod:`.storage`: Optuna's journal storage, interrupted trials, trials.csv and best configs;
- :mod:`.driver`: trials as runs on the sweep's runner;
- :mod:`.report`: the tune report (best values, sensitivity, best score against trials).
"""
