"""The homologation kit: the frames journal, the CNDA's test plan for a perimeter, the declarations, the run."""
