"""The built-in simulated telephony provider (a real HTTP server), for demos, tests, benchmarks."""
