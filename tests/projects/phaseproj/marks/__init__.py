"""The marks app of the deploy-phase test project."""
