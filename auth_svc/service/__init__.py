"""auth_svc's gRPC servicers, one module per gRPC service: AuthService (auth.py), ClinicStaffService
(clinic_staff.py)."""

from auth_svc.service.auth import AuthServicer
from auth_svc.service.clinic_staff import ClinicStaffServicer

__all__ = ["AuthServicer", "ClinicStaffServicer"]
