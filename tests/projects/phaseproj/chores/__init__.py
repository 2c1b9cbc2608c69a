"""The chores app of the deploy-phase test project."""
