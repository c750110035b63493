"""Patient identity, shared by every area that creates patients (téléexpertise, DUI, PFI).

- `insi.py`: a client of the CNAM téléservice INSi, "recherche par traits" (the INS and its reference traits).
- `patient.py`: the FR Core rendering of an identity: INS identifier, strict traits, identity reliability
  (RNIV status), and the traits read back from a Patient.
"""
