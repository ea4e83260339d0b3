"""One router per resource of the prediction API."""
