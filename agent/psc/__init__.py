"""Pro Santé Connect (PSC): the professional's identity through OpenID Connect (CPS card or e-CPS app)."""
