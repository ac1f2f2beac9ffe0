"""Short-lived scrapers: one run fetches one provider and stores one snapshot."""
