"""`python -m dialer`: the command line (dialer.cli), through dialer.entry."""

from dialer.entry import main

if __name__ == "__main__":
    main()
