"""Tell DataRobot where everything is: Helm values, the templates refresh, credentials, tag updates."""

from nimrunbook.datarobot.credentials import CredentialCheck, check_read_credentials, secure_configuration_steps
from nimrunbook.datarobot.refresh import RefreshResult, refresh_commands, run_refresh
from nimrunbook.datarobot.update import UpdatePlan, compare_manifests, plan_update
from nimrunbook.datarobot.values import DataRobotSettings, build_values, merge_values, validate, values_yaml

__all__ = [
    "CredentialCheck",
    "DataRobotSettings",
    "RefreshResult",
    "UpdatePlan",
    "build_values",
    "check_read_credentials",
    "compare_manifests",
    "merge_values",
    "plan_update",
    "refresh_commands",
    "run_refresh",
    "secure_configuration_steps",
    "validate",
    "values_yaml",
]
