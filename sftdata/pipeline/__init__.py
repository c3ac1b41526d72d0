"""One config for the whole run: ``sftdata run CONFIG.yaml`` = prepare → mix → pack → train.

    >>> from sftdata_train.pipeline import load_config, run_pipeline   # with the train stage
    >>> result = run_pipeline("examples/pipeline.yaml")          # doctest: +SKIP
    >>> result.stage("pack").status                               # doctest: +SKIP
    'skipped'

* :mod:`~sftdata.pipeline.validate` (with :mod:`~sftdata.pipeline.keys`): reading and checking
  the file (every bad key at once, named by its path, with "did you mean");
* :mod:`~sftdata.pipeline.config`: the resolved config and the stage layout;
* :mod:`~sftdata.pipeline.mix`: mixing datasets by ``weight``/``num_rows``;
* :mod:`~sftdata.pipeline.fingerprint`: what makes a stage up to date;
* :mod:`~sftdata.pipeline.runner`: the data stages; the train stage is supplied by the trainer
  (:class:`~sftdata.pipeline.config.TrainStage`, ``sftdata_train.pipeline.TRAINER``): this package
  never imports ``sftdata_train``. ``sftdata.pipeline.load_config``/``run_pipeline`` alone handle
  configs without ``train:``; ``sftdata_train.pipeline``'s handle every config.

See ``docs/pipeline.md``.
"""

from .config import DatasetEntry, PackSpec, PipelineConfig, TrainStage
from .validate import load_config
from .runner import CONFIG_FILE, STAGE_FILE, PipelineResult, StageResult, StageRunner, read_stage, run_pipeline

__all__ = [
    "CONFIG_FILE",
    "STAGE_FILE",
    "DatasetEntry",
    "PackSpec",
    "PipelineConfig",
    "PipelineResult",
    "StageResult",
    "StageRunner",
    "TrainStage",
    "load_config",
    "read_stage",
    "run_pipeline",
]
