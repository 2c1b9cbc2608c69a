"""The forked app of the deploy-phase test project."""
