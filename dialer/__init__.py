"""dialer: bulk outbound call campaigns, coordinated through PostgreSQL."""

__version__ = "0.1.0"
