"""Every metric and every benchmark protocol, offline.

Metrics: region similarity J and boundary F (``metrics``), COCO mask mAP / precision@k / IoUs
(``a2d``). Protocols: DAVIS-2017 J&F
(``davis``), Ref-DAVIS17 over 4 annotators (``refdavis``), MeViS valid_u (``mevis``), Ref-YouTube-VOS-layout
predictions against ground-truth folders (``ytvos``), A2D-/JHMDB-Sentences (``a2d``), and ``main.py --eval``
on A2D / JHMDB / RefCOCO (``referring``). ``tools/evaluate.py`` is the command line.
"""
from rvos.evaluation.a2d import evaluate_referring_segmentation
from rvos.evaluation.davis import evaluate_davis, sequence_statistics, write_davis_csvs
from rvos.evaluation.mevis import PredictionError, evaluate_mevis
from rvos.evaluation.refdavis import evaluate_refdavis
from rvos.evaluation.report import format_table, save_json

__all__ = ["evaluate_davis", "evaluate_mevis", "evaluate_refdavis", "evaluate_referring_segmentation",
           "sequence_statistics", "write_davis_csvs", "PredictionError", "format_table", "save_json"]
