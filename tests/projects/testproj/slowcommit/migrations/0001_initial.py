"""A table whose deferred constraint trigger sleeps at COMMIT for the seconds a row asks.

PostgreSQL only: a test uses it to kill a holder while its migration's transaction commits.
"""

from django.db import migrations

TRIGGER = """
CREATE TABLE slowcommit_marker (seconds double precision NOT NULL);
CREATE FUNCTION slowcommit_sleep() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_sleep(NEW.seconds);
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER slowcommit_at_commit AFTER INSERT ON slowcommit_marker
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION slowcommit_sleep();
"""
DROP = "DROP TABLE slowcommit_marker; DROP FUNCTION slowcommit_sleep();"


class Migration(migrations.Migration):
    dependencies = [("inventory", "0004_warehouse")]

    operations = [migrations.RunSQL(TRIGGER, DROP)]
