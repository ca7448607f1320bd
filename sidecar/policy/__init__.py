"""The pure domain: rights catalogue, role templates, the casbin engine, decisions, seats.

No Flask and no Redis here; ``engine`` is the only module that speaks casbin.
"""
