"""Offline evaluation, one module per protocol: DAVIS-2017 J&F (``davis``), Ref-DAVIS17 over 4 annotators
(``refdavis``), MeViS valid_u (``mevis``) and A2D-/JHMDB-Sentences (``a2d``). The J and F primitives are in
``util.metrics``; ``tools/evaluate.py`` is the command line."""
from datasets.evaluation.a2d import evaluate_referring_segmentation
from datasets.evaluation.davis import evaluate_davis, sequence_statistics, write_davis_csvs
from datasets.evaluation.mevis import PredictionError, evaluate_mevis
from datasets.evaluation.refdavis import evaluate_refdavis
from datasets.evaluation.report import format_table, save_json

__all__ = ["evaluate_davis", "evaluate_mevis", "evaluate_refdavis", "evaluate_referring_segmentation",
           "sequence_statistics", "write_davis_csvs", "PredictionError", "format_table", "save_json"]
