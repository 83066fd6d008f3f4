"""Outbound webhooks: events from the outbox (db.webhooks), signed as Standard Webhooks says,
delivered at least once by `dialer serve`, in order per contact."""
