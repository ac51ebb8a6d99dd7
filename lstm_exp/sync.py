"""``python -m lstm_exp.sync <run folder>``: upload a run's queued MLflow writes (``lstm_exp.tracking.sync``)."""

import sys

from lstm_exp.tracking.sync import main

if __name__ == "__main__":
    sys.exit(main())
