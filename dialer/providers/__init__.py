"""Provider adapters: one module per kind (its account model and adapter), one small interface
(base.py), and the registry that pairs them (registry.py)."""
