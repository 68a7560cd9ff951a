"""The DMP (Mon espace santé) client: XDS.b metadata, IHE DSG signature, VIHF, SOAP/MTOM, TD0.2-TD3.3."""
