"""XML: hardened parsing, canonicalisation, XML-DSig and XAdES through the Signer seam."""
