"""CDA R2 documents (ANS CI-SIS): header parsing (parse.py), N1 generation (generate.py), code systems and
timestamps shared with the XDS mapping (systems.py)."""
