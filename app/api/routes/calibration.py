"""The match thresholds in use: fitted on this catalogue by `sourcelens calibrate`, or the shipped defaults."""

from fastapi import APIRouter

from app.api.deps import CalibrationDep
from app.api.mapping import calibration_read
from app.api.schemas import CalibrationRead
from app.api.security import ReadCaller

router = APIRouter(prefix="/api/v1", tags=["search"])


@router.get("/calibration", response_model=CalibrationRead)
def calibration_route(calibration: CalibrationDep, _caller: ReadCaller) -> CalibrationRead:
    """What each match level requires here, where that came from, and the rates it was measured at."""
    return calibration_read(calibration.current())  # a sync route: FastAPI runs it in its thread pool
