"""Follow-up comparison: lesions matched across time points and the RANO-BM response.

Modules: ``registration`` (rigid follow-up -> baseline, over :mod:`BrainMetSegLib.coregister`),
``matching`` (overlap, then distance; merges and splits), ``rano`` (RANO-BM rules, Lin et al.
2015, radiographic part), ``tracking`` (tracks with stable ids, the longitudinal table),
``sources`` (time points from ``segment`` result folders or scans), ``report`` (HTML / PNG).

    from BrainMetSegLib.longitudinal import TimePoint, compare_timepoints
    result = compare_timepoints([TimePoint("baseline", img0, lab0), TimePoint("fu1", img1, lab1)])
    result.to_dict()   # plain data (JSON-ready) for the Slicer module and the viewer
"""

from .colours import track_colour
from .matching import MatchConfig, match_lesions
from .rano import NOT_FROM_IMAGES, Measure, RanoAssessment, RanoConfig, TimepointResponse, assess
from .registration import Registration, register_followup
from .tracking import (
    CompareConfig,
    LesionAtTime,
    LongitudinalResult,
    TimePoint,
    Track,
    compare_timepoints,
)

__all__ = ["NOT_FROM_IMAGES", "CompareConfig", "LesionAtTime", "LongitudinalResult", "MatchConfig", "Measure",
           "RanoAssessment", "RanoConfig", "Registration", "TimePoint", "TimepointResponse", "Track", "assess",
           "compare_timepoints", "match_lesions", "register_followup", "track_colour"]
