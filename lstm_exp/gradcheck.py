"""``python -m lstm_exp.gradcheck``: the core's gradient check over both losses and reductions
(``lstm_exp.core.gradcheck``); exit status 1 if any tensor fails."""

import sys

from lstm_exp.core.gradcheck import main

if __name__ == "__main__":
    sys.exit(main())
