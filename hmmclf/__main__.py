"""``python -m hmmclf``: the command line."""

from hmmclf.app.cli import run

if __name__ == "__main__":
    run()
