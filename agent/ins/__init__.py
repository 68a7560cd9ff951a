"""INSi: the téléservice that gives a patient's INS (messages in ``soap``, transport in ``client``)."""
