"""The tangle app of the deploy-phase test project."""
