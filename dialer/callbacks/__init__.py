"""The callback receiver (`dialer serve`, `dialer run --serve`)."""
