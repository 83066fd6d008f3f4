"""`python -m dialer`: the command line (dialer.cli)."""

from dialer.cli import main

if __name__ == "__main__":
    main()
