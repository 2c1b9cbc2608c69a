"""The order of a run, in one place: the run sequence (:mod:`.run`), the migrate step per
database (:mod:`.migrate`), the one lock-holding path with its fencing (:mod:`.holding`,
:mod:`.fence`), rollback (:mod:`.rollback`), what every command does first (:mod:`.setup`), and
where events go (:mod:`.report`)."""
