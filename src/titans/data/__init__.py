"""Transaction data layer: the export format, validation, synthetic data, versions."""
