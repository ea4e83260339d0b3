"""Monitoring: drift, data quality, performance, metrics and alerts."""
