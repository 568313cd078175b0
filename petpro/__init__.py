"""PetPro shared runtime kit.

The generated contracts live in ``gen/petpro/<domain>/v1`` (package names follow the proto packages,
``petpro.booking.v1``).  ``gen/`` is on ``sys.path`` (a ``.pth`` file written by ``make setup``;
``PYTHONPATH`` in containers), and ``extend_path`` merges ``gen/petpro`` into this package, so
``from petpro.booking.v1 import booking_pb2`` and ``from petpro import settings`` both work.
"""

from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)
