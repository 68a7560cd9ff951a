"""MSSanté: IHE XDM packaging, MIME with the X-MSS headers, SMTP/IMAP clients, acknowledgements, masking rules."""
