from booking_svc.repository import metadata
from petpro.migrations import run_env

run_env(metadata)
