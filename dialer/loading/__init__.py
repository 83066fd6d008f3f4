"""Turning a contacts CSV into campaign contacts: read, validate, stage, insert."""
