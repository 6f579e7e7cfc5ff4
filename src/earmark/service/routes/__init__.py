"""The API's routes, one ``APIRouter`` per area (``earmark.service.api`` includes them).

:mod:`~earmark.service.routes.health` (``/healthz``, ``/readyz``, ``/metrics``),
:mod:`~earmark.service.routes.catalog` (``/v1/classes``, ``/v1/models``),
:mod:`~earmark.service.routes.jobs` (``/v1/jobs...``), :mod:`~earmark.service.routes.detect`
(``/v1/detect``) and :mod:`~earmark.service.routes.web` (the page and its ``/v1/config``).
"""
