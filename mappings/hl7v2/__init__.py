"""HL7 v2.5 / IHE PAM France inbound messages: decoding, ACKs (ack.py) and ADT → FHIR (adt.py)."""
