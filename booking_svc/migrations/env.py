from booking_svc.adapters.tables import metadata
from petpro.migrations import run_env

run_env(metadata)
