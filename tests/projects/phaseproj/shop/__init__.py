"""The shop app of the deploy-phase test project."""
