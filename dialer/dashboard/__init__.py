"""The live dashboard served by `dialer serve`."""
