"""Command-line tools, each runnable as ``python tools/<name>.py`` from the checkout: data (``make_synthetic_data``,
``check_dataset``, ``make_tiny_text_encoder``), results (``evaluate``, ``check_submission``) and benchmarks."""
