"""The prediction API: auth, rate limits, model store, prediction log and metrics."""
