"""When this program was started, as the monotonic clock read when the ``lstm_exp`` package was first imported.

The process may be older (a shell that exec'd python keeps its pid and start time), so the time to the first
step is measured from the later of the two (``lstm_exp.common.ownership.process_age``).
"""

import time

LOADED = time.monotonic()
