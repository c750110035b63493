"""The imaging store: DICOM instances (metadata in MongoDB, bytes in the blob store), DICOMweb
(QIDO-RS, WADO-RS, STOW-RS) under /dicomweb, the ImagingStudy/Endpoint sync and a minimal viewer.

`store.DicomStore` is the one entry point every producer (STOW-RS, the DIMSE SCP) and consumer uses.
"""
