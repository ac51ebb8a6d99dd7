import time

# When this program was started: the process may be older (a shell that exec'd python keeps its pid and start
# time), so the time to the first step is measured from the later of the two (lstm_exp.owner.process_age).
LOADED = time.monotonic()
