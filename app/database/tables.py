"""Every table's model module, imported so that the metadata (create_all, migrations) sees them all."""

from app.access import models as access_tables
from app.alerts import models as alert_tables
from app.batch import models as batch_tables
from app.calibration import models as calibration_tables
from app.catalog import models as catalog_tables
from app.ingest import models as ingest_tables

TABLES = (access_tables, alert_tables, batch_tables, calibration_tables, catalog_tables, ingest_tables)
