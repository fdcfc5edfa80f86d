"""The study (paper Section IV): sweeps per figure, the paper's claims checked on them, plots, the report index."""
