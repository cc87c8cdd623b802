"""Reports: each role's dashboard and, later, rollups, charts and CSV exports."""
