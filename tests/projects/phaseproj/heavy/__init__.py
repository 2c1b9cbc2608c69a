"""The heavy app of the deploy-phase test project: one table with rows, then one operation per
migration, each with a known effect on the table (rewrite, scan, index build, rebuild, nothing)."""
