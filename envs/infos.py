"""Keys the vectorized envs add to the step infos, beside SB3's ``episode`` and ``terminal_observation``."""

LIFE_LOST = "life_lost"  # a life was lost at this step and the game goes on (see envs.episode_starts)
