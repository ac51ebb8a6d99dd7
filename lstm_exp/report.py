"""``python -m lstm_exp.report``: the command line of the sweep report (``lstm_exp.sweeps.report``)."""

import sys

from lstm_exp.sweeps.report import main

if __name__ == "__main__":
    sys.exit(main())
