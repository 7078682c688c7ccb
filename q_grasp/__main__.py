"""`python -m q_grasp ...`: the single-process train / eval / plot command line."""

import sys

from q_grasp.cli import main

if __name__ == "__main__":
    sys.exit(main())
