"""The one-command pipeline: a typed TOML config (``config``), stages that rerun only when
their inputs change (``stages``), and the job that wires the stages for an SE model and
its plain twin (``job``)."""

from se_deploy.pipeline.config import BUILT_PRECISIONS, DEFAULT_CONFIG, PipelineConfig, load_config
from se_deploy.pipeline.job import SYNTHETIC_LABEL, Job, build_job, run_pipeline
from se_deploy.pipeline.stages import Skip, Stage, StageResult, StageStatus, run_stages

__all__ = ["BUILT_PRECISIONS", "DEFAULT_CONFIG", "Job", "PipelineConfig", "SYNTHETIC_LABEL", "Skip", "Stage",
           "StageResult", "StageStatus", "build_job", "load_config", "run_pipeline", "run_stages"]
