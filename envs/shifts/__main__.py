"""Print the markdown table of all shifts and levels: `python -m envs.shifts [env_id ...]`."""
import sys

import envs  # noqa: F401  (registers the env ids)
from envs.shifts import DOC_ENVS, DOC_EXAMPLES, shift_table_markdown

print(shift_table_markdown(tuple(sys.argv[1:]), ()) if sys.argv[1:] else shift_table_markdown(DOC_ENVS, DOC_EXAMPLES))
