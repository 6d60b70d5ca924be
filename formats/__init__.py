"""Archive container, index and dataset readers/writers. No torch and no entropy coding here."""
