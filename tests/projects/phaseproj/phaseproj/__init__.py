"""A tiny project whose pending migrations cover the deploy-phase cases."""
