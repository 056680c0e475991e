"""``python -m hmmclf`` and the ``hmmclf`` console script.

Only the standard library is imported before the command line is: a Ctrl-C
while numpy, pandas and scikit-learn load (a second or more) is then one line
and exit code 130, not a traceback.
"""

import os
import sys


def main() -> None:
    """Start the command line (:func:`hmmclf.app.cli.run`)."""
    from hmmclf.utils.allocator import fix_malloc_thresholds

    # Before numpy allocates anything: large temporary arrays are given back to the system when
    # freed, not kept on the heap at their high-water mark (see hmmclf.utils.allocator).
    fix_malloc_thresholds()
    try:
        from hmmclf.app.cli import run
    except KeyboardInterrupt:
        sys.stderr.write("hmmclf: interrupted\n")
        sys.stderr.flush()
        os._exit(130)
    run()


if __name__ == "__main__":
    main()
