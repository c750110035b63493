"""IHE XDS metadata (ebRIM 3.0: DocumentEntry / SubmissionSet) ↔ FHIR DocumentReference / List, the way
IHE MHD and the ANS PDSm profile map them (ebrim.py), with the HL7 v2 data types of the slots
(datatypes.py). Used to feed the DMP (ITI-41) and to read XDM packages."""
