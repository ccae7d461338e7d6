"""The registry: patients, devices, assignments, enrollments, care activity, ledger."""
