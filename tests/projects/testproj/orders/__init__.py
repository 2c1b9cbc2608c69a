"""Orders of products: a cross-app dependency and a non-atomic concurrent index."""
