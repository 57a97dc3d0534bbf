"""A second, independent source of labelled SYNTHETIC ECG records, made by third-party generators (issue #17).

Why: every model here is trained and evaluated on ``simulators.scenarios``; a result that holds only on the
generator it was trained on is a property of that generator. This package never calls it. Beat waveforms come from
neurokit2's ECGSYN dynamical model (``neurokit2.ecg_simulate``), noise from ``neurokit2.signal_distort``, and
rhythm, ectopy and precursors from a model built to differ from ours (see ``_rhythm`` and ``_plan``).
``python main.py build-second-source --out DIR`` writes the records; :func:`check_records` measures them.
"""

from simulators.second_source._build import (
    LABEL,
    MANIFEST,
    SecondSourceRecord,
    build_second_source,
    make_record,
    record_kind,
)
from simulators.second_source._plan import KINDS
from simulators.second_source.check import check_records, markdown_table

__all__ = [
    "KINDS",
    "LABEL",
    "MANIFEST",
    "SecondSourceRecord",
    "build_second_source",
    "check_records",
    "make_record",
    "markdown_table",
    "record_kind",
]
