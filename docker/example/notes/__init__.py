"""Short notes: the one app of the example site."""
