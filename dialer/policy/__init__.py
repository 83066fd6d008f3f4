"""Pure dialing rules (no I/O): calling windows, retry delays, attempt state ranks."""
