"""Operations of the project's own, as utility packages ship them: not Django's, but written
with the schema editor, so ``sqlmigrate`` (and the plan) can collect their SQL."""

from django.db.migrations.operations.base import Operation


class AddTouchTrigger(Operation):
    """A trigger that copies qty into itself on every update of the item table."""

    reduces_to_sql = True
    reversible = True

    def state_forwards(self, app_label, state):
        pass

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(
                "CREATE FUNCTION heavy_touch() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN NEW.qty := NEW.qty; RETURN NEW; END $$"
            )
            schema_editor.execute(
                "CREATE TRIGGER heavy_item_touch BEFORE UPDATE ON heavy_item "
                "FOR EACH ROW EXECUTE FUNCTION heavy_touch()"
            )
        else:
            schema_editor.execute(
                "CREATE TRIGGER heavy_item_touch BEFORE UPDATE ON heavy_item "
                "FOR EACH ROW SET NEW.qty = NEW.qty"
            )

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute("DROP TRIGGER heavy_item_touch ON heavy_item")
            schema_editor.execute("DROP FUNCTION heavy_touch()")
        else:
            schema_editor.execute("DROP TRIGGER heavy_item_touch")

    def describe(self):
        return "Add the touch trigger"


class WidenQuantity(Operation):
    """Turns the qty column into a 20-digit decimal, in SQL of its own (state unchanged)."""

    reduces_to_sql = True
    reversible = False

    def state_forwards(self, app_label, state):
        pass

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute('ALTER TABLE "heavy_item" ALTER COLUMN "qty" TYPE numeric(20, 0)')
        else:
            schema_editor.execute("ALTER TABLE `heavy_item` MODIFY `qty` decimal(20, 0) NOT NULL")

    def describe(self):
        return "Widen qty to a decimal"
