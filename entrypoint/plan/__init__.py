"""Deploy planning, pure: deploy phases (marks, rules, the field diff, the policy), the table-lock
notes, and reversibility. Migrations and migration state in, judgments out; no database, clock
or environment is touched here."""
