"""The registry's table names, for the readers that go through the driver without the ORM.

The metrics job reads the registry with plain SQL on the driver's cursor; importing the ORM
models (SQLAlchemy's declarative layer) for their names alone would cost a run a fifth of a
second before it starts its workers. :mod:`rpmpipe.registry.models` takes its names from
here, so there is one spelling of each.
"""

PATIENTS = "patients"
DEVICE_ASSIGNMENTS = "device_assignments"
ENROLLMENTS = "enrollments"
CARE_ACTIVITIES = "care_activities"
CARE_PLANS = "care_plans"
