"""The drift app of the deploy-phase test project."""
