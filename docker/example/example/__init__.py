"""A small Django site that the container image and the quick start run behind the entrypoint."""
