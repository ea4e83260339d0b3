"""Automated retraining: triggers, training data versions, the challenger's path to production."""
